/**
 * The HTTP app: webhook endpoints, health (src/server/health.ts), metrics, and the operator console
 * under /dashboard (src/server/console/routes.ts: off, 404, without ADMIN_TOKEN). Built by a function
 * and tested with `inject()`; only the entry point listens.
 *
 * A delivery's path: room for its body (503 unread; src/server/limits.ts, with the timeouts and
 * connection caps) -> size check (413) -> signature over the raw bytes (401) -> parse (415/400) ->
 * durable enqueue -> 200. Log lines any client can cause are sampled (src/server/sampled-log.ts).
 * Nothing is enqueued for any 4xx; a failed enqueue answers 503 so the vendor delivers again, and only
 * then: a body we cannot accept is always a 4xx (see refusal). A delivery that parses to no events (a
 * validation ping, an event we do not store) is acknowledged with 200 and a note, so that vendors do not
 * disable the hook. A delivery byte for byte one accepted within the replay window is answered 200 with
 * a note and not enqueued again (replay-window.ts); a delivery is remembered there only once its events
 * are durable.
 */
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ConnectorError, toErrorRecord } from '../errors.ts';
import type { Lifecycle } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import type { SourceName } from '../model.ts';
import type { Queue } from '../queue/queue.ts';
import type { Delivery, Source } from '../sources/source.ts';
import { DEFAULT_HTTP_LIMITS, installHttpLimits, serverOptions, type HttpLimits } from './limits.ts';
import type { Registry } from 'prom-client';
import { HealthChecks, registerHealthRoutes } from './health.ts';
import { createMetrics } from './metrics.ts';
import { registerConsole, type ConsoleOptions } from './console/routes.ts';
import type { ReplayWindow } from './replay-window.ts';
import { SampledLog } from './sampled-log.ts';

export interface AppOptions {
  log: Logger;
  queue: Queue;
  sources: readonly Source[];
  lifecycle: Lifecycle;
  /** Largest delivery body accepted, in bytes (WEBHOOK_MAX_BODY_BYTES). */
  maxBodyBytes: number;
  /** Recognises a delivery accepted before, byte for byte (replay-window.ts); none: every delivery is enqueued. */
  replayWindow?: ReplayWindow;
  /**
   * The health checks (src/server/health.ts): what GET /health, /health/ready and
   * connector_health_check_ok judge. Default: checks of the queue alone, with `healthDetails` as the
   * worker's facts when given, at the default thresholds.
   */
  health?: HealthChecks;
  /** The alerts (src/alerts/alerts.ts), whose metrics (connector_alert_active, connector_alerts_sent_total, ...) /metrics serves. */
  alerts?: { registerMetrics(registry: Registry): void };
  /** What /health says of the queue engine's durability, when start-up accepted a weak one (REDIS_DURABILITY=relaxed); ignored with `health`. */
  queueDurability?: string;
  /** Extra health facts (database, worker, vendors), added to GET /health; ignored with `health`. */
  healthDetails?: () => Promise<Record<string, unknown>>;
  now?: () => Date;
  /** Timeouts and what one client may hold (src/server/limits.ts); defaults for what is not given. */
  limits?: Partial<HttpLimits>;
  /** Lines per minute and reason about refused deliveries (LOG_REFUSALS_PER_MINUTE). Default 10. */
  refusalLinesPerMinute?: number;
  /** The operator console under /dashboard (src/server/console/routes.ts); absent or without adminToken: every /dashboard URL answers 404. */
  console?: ConsoleOptions;
}

/** HTTP status for each error code a delivery can be refused with. */
const DELIVERY_STATUS: Partial<Record<string, number>> = {
  CONN_ERR_WEBHOOK_SIGNATURE: 401,
  CONN_ERR_WEBHOOK_MALFORMED: 400,
  CONN_ERR_WEBHOOK_MEDIA_TYPE: 415,
  CONN_ERR_WEBHOOK_TOO_LARGE: 413,
  CONN_ERR_WEBHOOK_BUSY: 503,
};

/** Fastify's own refusals, in our words. */
const FASTIFY_ERRORS: Partial<Record<string, { code: string; status: number }>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'CONN_ERR_WEBHOOK_TOO_LARGE', status: 413 },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'CONN_ERR_WEBHOOK_MEDIA_TYPE', status: 415 },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'CONN_ERR_WEBHOOK_MALFORMED', status: 400 },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'CONN_ERR_WEBHOOK_MALFORMED', status: 400 },
};

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { log, queue, lifecycle } = options;
  const now = options.now ?? (() => new Date());
  const httpLog = log.child({ component: 'http' });
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS, ...options.limits };
  // Lines any client can cause are sampled, so that a flood cannot rotate the log's history away.
  const sampled = new SampledLog(httpLog, { perWindow: options.refusalLinesPerMinute, onSuppressed: (reason) => lifecycle.emit('log:suppressed', { reason }) });
  const app = Fastify({
    loggerInstance: httpLog,
    // Per-request lines would dominate the log at webhook rates; deliveries log their own outcome.
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request (pino's child() was about 4% of a delivery's CPU): request.log is the
    // app's logger, and the few lines written about a request name its id themselves.
    childLoggerFactory: (logger) => logger,
    bodyLimit: options.maxBodyBytes,
    return503OnClosing: true,
    ...serverOptions(limits),
  }) as unknown as FastifyInstance;
  const sourceNames = new Set<string>(options.sources.map((s) => s.name));

  /** Logs and counts a refused delivery, whoever refused it (a source, or Fastify before the handler). */
  const refuse = (request: FastifyRequest, reply: FastifyReply, status: number, code: string, message: string) => {
    const source = /^\/webhooks\/([^/?]+)/.exec(request.url)?.[1];
    if (source !== undefined && sourceNames.has(source)) {
      lifecycle.emit('delivery:rejected', { source: source as SourceName, status, code });
      sampled.write('warn', `${source}:${code}`, { reqId: request.id, source, status, code }, `delivery refused: ${message}`);
    }
    return sendError(reply, status, code, message);
  };

  app.addHook('onClose', async () => sampled.close());
  installHttpLimits(app, limits, options.maxBodyBytes, {
    onRefused: (reason, client) => {
      lifecycle.emit('http:refused', { reason });
      sampled.write('warn', `http:${reason}`, { reason, client }, reason === 'timeout' ? 'request not received in time; connection closed' : 'too many connections; connection refused');
    },
    refuseBody: (request, reply, message) => {
      void reply.header('connection', 'close').header('retry-after', '1');
      return refuse(request, reply, 503, 'CONN_ERR_WEBHOOK_BUSY', message);
    },
  }, (url) => /^\/webhooks\/[^/?]+/.test(url));

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const known = FASTIFY_ERRORS[error.code];
    if (known !== undefined) return refuse(request, reply, known.status, known.code, error.message);
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return refuse(request, reply, error.statusCode, 'CONN_ERR_WEBHOOK_MALFORMED', error.message);
    }
    request.log.error({ reqId: request.id, err: error }, 'request failed');
    return sendError(reply, 500, 'CONN_ERR_INTERNAL', 'internal error');
  });

  const metrics = createMetrics(lifecycle, queue, options.sources);
  options.replayWindow?.registerMetrics(metrics.registry);
  app.addHook('onClose', async () => metrics.detach());
  app.get('/metrics', async (_request, reply) => {
    return reply.type(metrics.registry.contentType).send(await metrics.render());
  });

  // GET /health, /health/ready, /health/live (src/server/health.ts).
  const health = options.health ?? new HealthChecks({
    queue,
    lifecycle,
    ...(options.healthDetails === undefined ? {} : { worker: { facts: options.healthDetails } }),
    ...(options.queueDurability === undefined ? {} : { queueDurability: options.queueDurability }),
  });
  if (options.health === undefined) app.addHook('onClose', async () => health.close());
  health.registerMetrics(metrics.registry);
  options.alerts?.registerMetrics(metrics.registry);
  registerHealthRoutes(app, health);

  // The console's overview shows the worker's facts (its database) as /health does.
  const healthDetails = options.healthDetails ?? (health.hasWorker ? () => health.workerFacts() : undefined);
  await registerConsole(app, options.console, { log, queue, ...(healthDetails === undefined ? {} : { healthDetails }) });

  for (const source of options.sources) {
    await app.register(async (scope) => {
      // Every content type reaches the handler as raw bytes: signatures are checked over exactly what
      // was sent, and the source decides which types it accepts (415 otherwise).
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: options.maxBodyBytes }, (_request, body, done) => done(null, body));
      scope.post(`/webhooks/${source.name}`, async (request, reply) => {
        const delivery: Delivery = { rawBody: Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0), headers: request.headers, receivedAt: now() };
        const parsed = (() => {
          try {
            source.verify(delivery);
            return source.parseWebhook(delivery);
          } catch (err) {
            const answer = refusal(err);
            // Sampled: whatever made the source throw, any client can send again and again.
            if (answer.unexpected) sampled.write('error', `${source.name}:unexpected`, { reqId: request.id, source: source.name, err, status: answer.status }, 'a source threw unexpectedly on a delivery');
            return answer;
          }
        })();
        if (parsed instanceof Refusal) {
          if (parsed.status >= 500) return sendError(reply, parsed.status, parsed.code, parsed.message);
          return refuse(request, reply, parsed.status, parsed.code, parsed.message);
        }
        // The same bytes accepted within the replay window: 200, not enqueued again (replay-window.ts).
        const replay = parsed.events.length > 0 ? options.replayWindow?.check(source.name, delivery.rawBody, { eventType: parsed.eventType, windowMs: parsed.replayWindowMs }) : undefined;
        if (replay?.duplicate === true) {
          request.log.debug({ reqId: request.id, source: source.name, acceptedAt: replay.acceptedAt }, replay.note);
          return reply.code(200).send({ ok: true, events: 0, duplicate: true, note: replay.note });
        }
        try {
          if (parsed.events.length > 0) await queue.enqueue(parsed.events);
        } catch (err) {
          const record = toErrorRecord(err);
          if (record.code === 'CONN_ERR_EVENT_INVALID') {
            // The queue refused the event for its content (it cannot be written as JSON), before any
            // I/O: the same body would be refused again, so a 503 would only be retried forever.
            sampled.write('error', `${source.name}:unstorable`, { reqId: request.id, source: source.name, err }, 'a delivery made an event the queue cannot store; refused (a source bug)');
            return refuse(request, reply, 400, record.code, record.message);
          }
          // Sampled too: while the disk is full every delivery fails the same way.
          sampled.write('error', `${source.name}:store-failed`, { reqId: request.id, source: source.name, err }, 'could not store delivery; answering 503 so the vendor retries');
          return sendError(reply, 503, record.code, 'could not store the delivery; try again');
        }
        if (replay?.duplicate === false) replay.accepted();
        lifecycle.emit('delivery:accepted', accepted(source.name, parsed.events.length, parsed.eventType));
        // Debug, not info: under load one line per delivery costs more CPU than the delivery itself
        // (docs/benchmarks.md, Ingest). The worker logs what it processed.
        const level = parsed.events.length === 0 ? 'info' : 'debug';
        if (httpLog.isLevelEnabled(level)) {
          const facts = { reqId: request.id, source: source.name, eventType: parsed.eventType, events: parsed.events.length, eventIds: parsed.events.map((e) => e.id) };
          // Without a webhook secret anyone can cause the info line: sampled like a refusal.
          if (level === 'info') sampled.write('info', `${source.name}:no-events`, facts, parsed.note ?? 'delivery accepted without events');
          else request.log.debug(facts, 'delivery accepted');
        }
        return reply.code(200).send({ ok: true, events: parsed.events.length, ...(parsed.note === undefined ? {} : { note: parsed.note }) });
      });
    });
  }

  return app;
}

class Refusal {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly message: string,
    /** Not one of our own refusals: a source threw something it should not have. */
    readonly unexpected = false,
  ) {}
}

/**
 * The answer to a delivery whose verify or parse threw. Our own refusals carry their status. Anything
 * else is a source bug, and still the body's fault as far as the vendor is concerned: verify and parse
 * are pure functions of the request (no I/O, no shared state), so the same delivery would throw the
 * same way on every retry, and a 5xx would have the vendor retry it forever (issue 14: deep bodies got
 * 503). It is answered 400 and logged at error level by the caller (`unexpected`), so that the bug is
 * seen; the vendor's delivery log keeps the body for a replay once it is fixed. The one exception is an
 * error that names a system call (errno): that is the machine, not the body, and gets 503.
 */
function refusal(err: unknown): Refusal {
  if (err instanceof ConnectorError) {
    const status = DELIVERY_STATUS[err.code];
    if (status !== undefined) return new Refusal(status, err.code, err.message);
  }
  if (err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string') {
    return new Refusal(503, 'CONN_ERR_INTERNAL', 'could not read the delivery; try again', true);
  }
  return new Refusal(400, 'CONN_ERR_WEBHOOK_MALFORMED', err instanceof Error ? err.message : 'unreadable delivery', true);
}

function accepted(source: SourceName, events: number, eventType: string | undefined) {
  return eventType === undefined ? { source, events } : { source, events, eventType };
}

function sendError(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).send({ error: code, message });
}
