/**
 * The shared vendor budgets' tables and function in a PostgreSQL queue engine, created with the
 * connector's other engine tables (src/queue/engine-tables.ts, schema `connector_engine`), read and
 * written by src/budget/postgres-budget-store.ts:
 *
 *   budgets         one row per budget (prefix, name): the pause in force and its reason
 *   budget_starts   one row per reservation within the longest window: (prefix, name, start time)
 *   budget_leases   one row per concurrency slot held: (prefix, name, lease id, expiry)
 *   reserve_budget  one reservation, atomic (see below)
 *
 * `reserve_budget` locks the budget's row (`FOR UPDATE`: reservations of one budget queue up there,
 * those of other budgets do not), then reads the time (`clock_timestamp()`, after the lock: the time a
 * start is logged is the time it was decided), the pause, the leases and each window, and grants or
 * refuses, in one round trip and one transaction. A start counts within a window while
 * `start >= now - interval` (timestamps have µs). For each window it looks up the `limit`-th newest
 * start still within it: while there is one, the window is full, until that start leaves it.
 *
 * A function of the schema name only, so that engine-tables.ts can include it without importing the
 * store (which imports engine-tables.ts).
 */
export function budgetTables(schema: string): string {
  return `
CREATE TABLE IF NOT EXISTS ${schema}.budgets (
  prefix text NOT NULL,
  name text NOT NULL,
  paused_until timestamptz,
  pause_reason text,
  PRIMARY KEY (prefix, name)
);
CREATE TABLE IF NOT EXISTS ${schema}.budget_starts (
  prefix text NOT NULL,
  name text NOT NULL,
  at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS budget_starts_by_time ON ${schema}.budget_starts (prefix, name, at);
CREATE TABLE IF NOT EXISTS ${schema}.budget_leases (
  prefix text NOT NULL,
  name text NOT NULL,
  id text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (prefix, name, id)
);
CREATE OR REPLACE FUNCTION ${schema}.reserve_budget(p_prefix text, p_name text, p_lease text, p_concurrency int, p_lease_ms int, p_limits int[], p_intervals_ms bigint[])
RETURNS TABLE (granted boolean, why text, wait_ms bigint, detail text)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_now timestamptz;
  v_paused timestamptz;
  v_reason text;
  v_held int;
  v_next timestamptz;
  v_nth timestamptz;
  v_longest bigint := 0;
  v_wait double precision := 0;
  v_full int := -1;
  v_free double precision;
  i int;
BEGIN
  INSERT INTO ${schema}.budgets (prefix, name) VALUES (p_prefix, p_name) ON CONFLICT (prefix, name) DO NOTHING;
  SELECT b.paused_until, b.pause_reason INTO v_paused, v_reason FROM ${schema}.budgets b WHERE b.prefix = p_prefix AND b.name = p_name FOR UPDATE;
  v_now := clock_timestamp();
  IF v_paused IS NOT NULL AND v_paused > v_now THEN
    RETURN QUERY SELECT false, 'paused'::text, ceil(extract(epoch FROM v_paused - v_now) * 1000)::bigint, coalesce(v_reason, '');
    RETURN;
  END IF;
  IF p_concurrency > 0 THEN
    DELETE FROM ${schema}.budget_leases l WHERE l.prefix = p_prefix AND l.name = p_name AND l.expires_at <= v_now;
    SELECT count(*), min(l.expires_at) INTO v_held, v_next FROM ${schema}.budget_leases l WHERE l.prefix = p_prefix AND l.name = p_name;
    IF v_held >= p_concurrency THEN
      RETURN QUERY SELECT false, 'concurrency'::text, greatest(1, ceil(extract(epoch FROM v_next - v_now) * 1000))::bigint, ''::text;
      RETURN;
    END IF;
  END IF;
  FOR i IN 1 .. coalesce(array_length(p_limits, 1), 0) LOOP
    v_longest := greatest(v_longest, p_intervals_ms[i]);
    SELECT s.at INTO v_nth FROM ${schema}.budget_starts s
      WHERE s.prefix = p_prefix AND s.name = p_name AND s.at >= v_now - p_intervals_ms[i] * interval '1 millisecond'
      ORDER BY s.at DESC OFFSET p_limits[i] - 1 LIMIT 1;
    IF FOUND THEN
      v_free := extract(epoch FROM v_nth + p_intervals_ms[i] * interval '1 millisecond' - v_now) * 1000;
      IF v_free > v_wait THEN
        v_wait := v_free;
        v_full := i - 1;
      END IF;
    END IF;
  END LOOP;
  IF v_full >= 0 THEN
    RETURN QUERY SELECT false, 'window'::text, greatest(1, ceil(v_wait))::bigint, v_full::text;
    RETURN;
  END IF;
  IF v_longest > 0 THEN
    DELETE FROM ${schema}.budget_starts s WHERE s.prefix = p_prefix AND s.name = p_name AND s.at < v_now - v_longest * interval '1 millisecond';
    INSERT INTO ${schema}.budget_starts (prefix, name, at) VALUES (p_prefix, p_name, v_now);
  END IF;
  IF p_concurrency > 0 THEN
    INSERT INTO ${schema}.budget_leases (prefix, name, id, expires_at) VALUES (p_prefix, p_name, p_lease, v_now + p_lease_ms * interval '1 millisecond');
  END IF;
  RETURN QUERY SELECT true, 'granted'::text, 0::bigint, ''::text;
END
$fn$;
`;
}
