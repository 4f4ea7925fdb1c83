/**
 * `register-webhooks`: makes, lists or removes the webhooks that point the vendors at our endpoints,
 * for both vendors, idempotently (a hook that is already there for our URL is left alone; hooks for
 * other URLs are never touched).
 *
 * - Teamwork: one hook per task event through its API (sources/teamwork/webhooks-admin.ts), signed
 *   with TEAMWORK_WEBHOOK_TOKEN.
 * - Missive: hooks through the undocumented `/v1/hooks` API with MISSIVE_WEBHOOK_SECRET
 *   (sources/missive/webhooks-admin.ts); when Missive refuses (or has no such API), the report carries the exact steps
 *   to create the rule by hand, which is the documented way.
 * A vendor whose API credentials are not set gets the manual steps (register) or is skipped (list,
 * remove). Each vendor's outcome is reported on its own; one failing does not stop the other.
 */
import { ApiError } from '../http/http-client.ts';
import type { SourceName } from '../model.ts';
import type { TeamworkClient } from '../sources/teamwork/client.ts';
import { listOurWebhooks, registerWebhooks, removeOurWebhooks, teamworkWebhookUrl } from '../sources/teamwork/webhooks-admin.ts';
import { TASK_WEBHOOK_EVENTS } from '../sources/teamwork/webhook.ts';
import { listOurMissiveHooks, missiveManualSteps, missiveWebhookUrl, registerMissiveHooks, removeOurMissiveHooks, type MissiveHook, type MissiveHooksApi } from '../sources/missive/webhooks-admin.ts';
import { SOURCE_API_SETTINGS } from './source-settings.ts';
import { UsageError } from './usage-error.ts';

export const WEBHOOK_ACTIONS = ['register', 'list', 'remove'] as const;
export type WebhookAction = (typeof WEBHOOK_ACTIONS)[number];

/** A hook at a vendor: its id there, the event (Teamwork) or type (Missive) and the URL it posts to. */
export interface HookInfo {
  id: string;
  event: string;
  url: string;
  /** The vendor's state of the hook when it says (Teamwork: `active`, `inactive`). */
  status?: string;
}

export interface VendorWebhookReport {
  source: SourceName;
  /** Our endpoint for this vendor. */
  endpoint: string;
  /**
   * ok: done as asked; manual: could not be done through the API, `manualSteps` say how by hand;
   * skipped: nothing to do (no credentials for list/remove, or not asked for); failed: see `error`/`fix`.
   */
  status: 'ok' | 'manual' | 'skipped' | 'failed';
  /** register: hooks made now. */
  created: HookInfo[];
  /** register: hooks that were already there; list: every hook of ours. */
  existing: HookInfo[];
  /** remove: hooks deleted. */
  removed: HookInfo[];
  /** Things the operator should know (unsigned hooks, a public URL vendors cannot reach). */
  notes: string[];
  error?: string;
  fix?: string;
  manualSteps?: string[];
}

export interface WebhookAdminDeps {
  /** PUBLIC_URL or `--url`: the base URL vendors reach us at. */
  publicUrl: string;
  /** The Teamwork API client (null: TEAMWORK_API_KEY or the site not set) and TEAMWORK_WEBHOOK_TOKEN. */
  teamwork: { client: TeamworkClient | null; token?: string };
  /** The Missive hooks API (null: MISSIVE_API_TOKEN not set) and MISSIVE_WEBHOOK_SECRET. */
  missive: { api: MissiveHooksApi | null; secret?: string };
  /** Vendors to act on. Default both. */
  sources?: readonly SourceName[];
  signal?: AbortSignal;
}

/** Checks that `publicUrl` is an http(s) URL (UsageError otherwise); returns it without trailing slashes. */
export function checkPublicUrl(publicUrl: string | undefined): string {
  if (publicUrl === undefined || publicUrl.trim() === '') {
    throw new UsageError('the webhooks need the public base URL vendors reach this connector at: set PUBLIC_URL (e.g. https://connector.example.com) or pass --url');
  }
  let url: URL;
  try {
    url = new URL(publicUrl.trim());
  } catch {
    throw new UsageError(`"${publicUrl}" is not a URL; expected e.g. https://connector.example.com`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new UsageError(`"${publicUrl}" is not an http(s) URL`);
  return publicUrl.trim().replace(/\/+$/, '');
}

export async function manageWebhooks(action: WebhookAction, deps: WebhookAdminDeps): Promise<VendorWebhookReport[]> {
  const publicUrl = checkPublicUrl(deps.publicUrl);
  const wanted = new Set(deps.sources ?? ['teamwork', 'missive']);
  const reports: VendorWebhookReport[] = [];
  const reach = reachabilityNote(publicUrl);
  if (wanted.has('teamwork')) reports.push(withNote(await teamwork(action, publicUrl, deps), action === 'register' ? reach : null));
  if (wanted.has('missive')) reports.push(withNote(await missive(action, publicUrl, deps), action === 'register' ? reach : null));
  return reports;
}

function emptyReport(source: SourceName, endpoint: string): VendorWebhookReport {
  return { source, endpoint, status: 'ok', created: [], existing: [], removed: [], notes: [] };
}

function withNote(report: VendorWebhookReport, note: string | null): VendorWebhookReport {
  if (note !== null && report.status !== 'skipped') report.notes.push(note);
  return report;
}

/** A note when the URL names this machine or a private network, which vendors on the internet cannot reach. */
function reachabilityNote(publicUrl: string): string | null {
  const host = new URL(publicUrl).hostname.replace(/^\[|\]$/g, '');
  const local = /^(localhost|127\.|10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|::1$|0\.0\.0\.0$)/i.test(host) || host.endsWith('.local');
  return local ? `${host} is not reachable from the internet: Teamwork and Missive cannot deliver there (use a public URL, or NGROK_AUTHTOKEN for a tunnel)` : null;
}

// ───────────────────────────── Teamwork ─────────────────────────────

/** The steps to create the Teamwork webhooks by hand (reference teamwork.md §1.1, §1.7). */
export function teamworkManualSteps(publicUrl: string, tokenSet: boolean): string[] {
  return [
    'In Teamwork, as a site administrator: Settings > Webhooks; turn webhooks on if they are off.',
    `Add one webhook per event: ${TASK_WEBHOOK_EVENTS.join(', ')}.`,
    `For each: URL ${teamworkWebhookUrl(publicUrl)}, version 2, content type JSON (or Form; not XML).`,
    tokenSet
      ? 'Token: the value of TEAMWORK_WEBHOOK_TOKEN, exactly; Teamwork then signs each delivery (X-Projects-Signature) and the connector refuses any other.'
      : 'Token: generate one (e.g. `openssl rand -hex 32`), enter it on every hook AND set TEAMWORK_WEBHOOK_TOKEN to it, then restart the connector; without it, deliveries are not verified.',
  ];
}

async function teamwork(action: WebhookAction, publicUrl: string, deps: WebhookAdminDeps): Promise<VendorWebhookReport> {
  const report = emptyReport('teamwork', teamworkWebhookUrl(publicUrl));
  const { client, token } = deps.teamwork;
  if (client === null) {
    if (action !== 'register') return { ...report, status: 'skipped', notes: [`API credentials not set (${SOURCE_API_SETTINGS.teamwork})`] };
    return { ...report, status: 'manual', notes: [`API credentials not set (${SOURCE_API_SETTINGS.teamwork}): create the webhooks by hand`], manualSteps: teamworkManualSteps(publicUrl, token !== undefined) };
  }
  const options = { client, publicUrl, signal: deps.signal };
  try {
    switch (action) {
      case 'list':
        report.existing = await listOurWebhooks(options);
        return report;
      case 'remove':
        report.removed = await removeOurWebhooks(options);
        return report;
      case 'register': {
        if (token === undefined) report.notes.push('TEAMWORK_WEBHOOK_TOKEN is not set: the hooks are made unsigned and deliveries are accepted without verification. Set it, run with --remove, then register again.');
        const result = await registerWebhooks({ ...options, ...(token !== undefined ? { token } : {}) });
        report.created = result.created;
        report.existing = result.existing;
        if (result.existing.length > 0) report.notes.push('hooks that were already there keep the token they were made with; after changing TEAMWORK_WEBHOOK_TOKEN, run with --remove, then register again.');
        return report;
      }
      default: {
        const never: never = action;
        throw new Error(`unknown action ${String(never)}`);
      }
    }
  } catch (err) {
    const failed = { ...report, status: 'failed' as const, error: message(err) };
    if (isAuth(err)) return { ...failed, fix: 'check TEAMWORK_API_KEY; managing webhooks needs a site administrator, with webhooks turned on in Settings > Webhooks' };
    if (action === 'register' && isRefusal(err)) {
      return { ...failed, status: 'manual', fix: 'Teamwork refused the webhook API call; create the webhooks by hand', manualSteps: teamworkManualSteps(publicUrl, token !== undefined) };
    }
    return { ...failed, fix: 'check TEAMWORK_SITE / TEAMWORK_BASE_URL (EU sites: <site>.eu) and the network, then try again' };
  }
}

// ───────────────────────────── Missive ─────────────────────────────

function hookInfo(hook: MissiveHook): HookInfo {
  return { id: hook.id, event: hook.type, url: hook.url };
}

async function missive(action: WebhookAction, publicUrl: string, deps: WebhookAdminDeps): Promise<VendorWebhookReport> {
  const report = emptyReport('missive', missiveWebhookUrl(publicUrl));
  const { api, secret } = deps.missive;
  const manual = (why: string, error?: unknown): VendorWebhookReport => ({
    ...report,
    status: 'manual',
    ...(error !== undefined ? { error: message(error) } : {}),
    fix: why,
    manualSteps: missiveManualSteps(publicUrl, secret !== undefined),
  });
  if (api === null) {
    if (action !== 'register') return { ...report, status: 'skipped', notes: [`API credentials not set (${SOURCE_API_SETTINGS.missive}); rules made in Missive's settings are not visible through the API anyway`] };
    return manual(`${SOURCE_API_SETTINGS.missive} is not set: create the webhook rule by hand`);
  }
  try {
    switch (action) {
      case 'list':
        report.existing = (await listOurMissiveHooks(api, publicUrl, deps.signal)).map(hookInfo);
        report.notes.push("only hooks made through the API are listed; rules made in Missive's settings are not visible here");
        return report;
      case 'remove':
        report.removed = (await removeOurMissiveHooks(api, publicUrl, deps.signal)).map(hookInfo);
        if (report.removed.length === 0) report.notes.push("rules made in Missive's settings are not visible through the API: delete those by hand (Settings > Rules)");
        return report;
      case 'register': {
        if (secret === undefined) report.notes.push('MISSIVE_WEBHOOK_SECRET is not set: the hooks are made without a secret and deliveries are accepted without verification.');
        const result = await registerMissiveHooks(api, { publicUrl, ...(secret !== undefined ? { secret } : {}), signal: deps.signal });
        report.created = result.created.map(hookInfo);
        report.existing = result.existing.map(hookInfo);
        if (result.refused !== undefined) {
          const { type, error } = result.refused;
          if (isAuth(error)) return { ...report, status: 'failed', error: message(error), fix: 'check MISSIVE_API_TOKEN (Missive: Preferences > API)' };
          if (!isRefusal(error)) return { ...report, status: 'failed', error: message(error), fix: 'check MISSIVE_BASE_URL and the network, then try again' };
          const reason = error instanceof ApiError && error.status === 422
            ? `Missive refused the "${type}" hook (its validation request to ${report.endpoint} failed: is the connector running and reachable there, with the same MISSIVE_WEBHOOK_SECRET?); create the rule by hand`
            : `Missive refused the "${type}" hook through its API; create the rule by hand`;
          return { ...manual(reason, error), created: report.created, existing: report.existing, notes: report.notes };
        }
        if (result.created.length > 0) report.notes.push("Missive's hooks API is undocumented: if no delivery arrives after the next email, create the rule by hand (docs/missive.md)");
        return report;
      }
      default: {
        const never: never = action;
        throw new Error(`unknown action ${String(never)}`);
      }
    }
  } catch (err) {
    if (isAuth(err)) return { ...report, status: 'failed', error: message(err), fix: 'check MISSIVE_API_TOKEN (Missive: Preferences > API)' };
    if (isRefusal(err)) {
      if (action === 'register') return manual('Missive has no hooks API for this token or account; create the rule by hand', err);
      return { ...report, status: 'failed', error: message(err), fix: "Missive's hooks API is not available; manage the rule in Missive's settings (Settings > Rules)" };
    }
    return { ...report, status: 'failed', error: message(err), fix: 'check MISSIVE_BASE_URL and the network, then try again' };
  }
}

// ───────────────────────────── errors ─────────────────────────────

function isAuth(err: unknown): boolean {
  return err instanceof ApiError && err.code === 'CONN_ERR_HTTP_AUTH';
}

/** The vendor understood and said no (404, 405, 400, 422...): a manual way may still work. */
function isRefusal(err: unknown): boolean {
  return err instanceof ApiError && (err.code === 'CONN_ERR_HTTP_NOT_FOUND' || err.code === 'CONN_ERR_HTTP_CLIENT' || err.code === 'CONN_ERR_HTTP_BAD_RESPONSE');
}

function message(err: unknown): string {
  if (err instanceof ApiError) {
    const status = err.status === undefined ? '' : ` (HTTP ${err.status})`;
    return `${err.code}${status}: ${err.message}`;
  }
  return err instanceof Error ? err.message : String(err);
}
