/**
 * What happens in the simulated Teamwork and Missive while the demo runs, and the checks that show the
 * connector kept up.
 *
 * 1. The start-up import: a first backfill of both sources (the demo runs it, rather than the
 *    connector's BACKFILL_ON_START, so that its counters see every event of it).
 * 2. A scripted tour, one change every `stepMs`, that shows every behaviour: a task created, updated,
 *    completed; another created and deleted; an email with attachments; a label change and a comment;
 *    a conversation of two emails trashed (Missive sends no webhook for that: only reconciliation can
 *    see it); and a change whose webhook is dropped (the simulator's `dropRate` set to 1 for that one
 *    change), which only reconciliation can recover.
 * 3. Steady random activity from the simulators' own activity loops.
 *
 * Throughout: reconciliation every `reconcileEveryMs` (`connector.reconcile()`; the connector's own
 * setting counts whole minutes), the simulators' delivery logs told as they grow (see narrator.ts),
 * and "watches": for each change only reconciliation can bring in, the database is read after each
 * reconciliation until the change is there, and a line says so.
 *
 * States: created -> started (`start()`) -> stopped (`stop()`: the tour is cut short, timers cleared,
 * activity stopped, the database read in progress finished). Nothing runs after `stop()` resolves.
 */
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Delivery } from '../simulators/index.ts';
import { DeliveryNarrator, describeMissiveDelivery, describeTeamworkDelivery, teamworkTaskId } from './narrator.ts';
import type { DemoStack } from './stack.ts';
import type { Feed } from './tally.ts';

export interface ScenarioOptions {
  /** Between two reconciliations, ms. Default 15,000. */
  reconcileEveryMs?: number;
  /** Between two steps of the tour, ms. Default 1,500. */
  stepMs?: number;
  /** Random changes per minute after the tour. Defaults: Teamwork 12, Missive 6 (Missive's API budget is 900 requests per 15 minutes). */
  teamworkPerMinute?: number;
  missivePerMinute?: number;
}

/** A change only reconciliation can bring in, and how to tell it has arrived. */
interface Watch {
  /** Wall-clock ms the change was made. */
  since: number;
  /** The line to tell once the change is in the database, or null while it is not. */
  check(): Promise<string | null>;
}

const TICK_MS = 500;
const WATCH_EVERY_TICKS = 4;

export class Scenario {
  private readonly abort = new AbortController();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly watches: Watch[] = [];
  private readonly narrators: DeliveryNarrator[];
  private readonly options: Required<ScenarioOptions>;
  private script: Promise<void> | null = null;
  private checking: Promise<void> | null = null;
  private ticks = 0;
  /** Start time of the newest reconciliation that has finished (its events are queued), ms. */
  private reconciledFrom = 0;
  private reconciling = false;
  private stopped = false;
  /** When the next reconciliation starts, ms; null before the first is scheduled. */
  nextReconcileAt: number | null = null;
  /** Reconciliations started by the demo. */
  reconciliations = 0;

  constructor(
    private readonly stack: DemoStack,
    private readonly feed: Feed,
    options: ScenarioOptions = {},
  ) {
    this.options = {
      reconcileEveryMs: options.reconcileEveryMs ?? 15_000,
      stepMs: options.stepMs ?? 1_500,
      teamworkPerMinute: options.teamworkPerMinute ?? 12,
      missivePerMinute: options.missivePerMinute ?? 6,
    };
    this.narrators = [
      new DeliveryNarrator(() => stack.teamwork.deliveries, describeTeamworkDelivery, feed),
      new DeliveryNarrator(() => stack.missive.deliveries, describeMissiveDelivery, feed),
    ];
  }

  start(): void {
    this.timers.push(setInterval(() => this.tick(), TICK_MS));
    this.feed.add('Importing what Teamwork and Missive already hold (the first backfill)…');
    // The import is not awaited past a stop: the connector's stop cuts it short.
    this.script = Promise.race([this.runReconciliation(), once(this.abort.signal, 'abort')])
      .then(async () => {
        if (this.stopped) return;
        this.scheduleReconciliation();
        await this.tour();
        this.steadyActivity();
      })
      .catch((err: unknown) => {
        if (!this.abort.signal.aborted) this.feed.add(`The scripted tour stopped: ${err instanceof Error ? err.message : String(err)}`);
      });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    await this.script;
    await Promise.all([this.stack.teamwork.stopActivity(), this.stack.missive.stopActivity()]);
    await this.checking;
  }

  // ---------------------------------------------------------------------------------------------

  private tick(): void {
    for (const narrator of this.narrators) narrator.look();
    this.ticks += 1;
    if (this.ticks % WATCH_EVERY_TICKS === 0 && this.checking === null && this.watches.length > 0) {
      this.checking = this.checkWatches().finally(() => (this.checking = null));
    }
  }

  private scheduleReconciliation(): void {
    const every = this.options.reconcileEveryMs;
    this.nextReconcileAt = Date.now() + every;
    this.timers.push(
      setInterval(() => {
        this.nextReconcileAt = Date.now() + every;
        if (!this.reconciling && !this.stopped) void this.runReconciliation();
      }, every),
    );
  }

  /** One reconciliation of both sources; resolves when their events are queued. Never rejects. */
  private async runReconciliation(): Promise<void> {
    this.reconciling = true;
    this.reconciliations += 1;
    const startedAt = Date.now();
    try {
      // Failures are logged (and so shown) by the reconciler; the next run tries again.
      await this.stack.connector.reconcile();
    } finally {
      this.reconciling = false;
      this.reconciledFrom = Math.max(this.reconciledFrom, startedAt);
    }
  }

  private async checkWatches(): Promise<void> {
    for (const watch of [...this.watches]) {
      if (this.stopped) return;
      // Only a reconciliation that started after the change can have brought it in.
      if (this.reconciledFrom <= watch.since) continue;
      const line = await watch.check().catch(() => null);
      if (line === null) continue;
      this.watches.splice(this.watches.indexOf(watch), 1);
      this.feed.add(line);
    }
  }

  /** Tells the deliveries made so far, so that the tour's own lines come after them. */
  private told(): void {
    for (const narrator of this.narrators) narrator.look();
  }

  private async pause(): Promise<void> {
    await sleep(this.options.stepMs, undefined, { signal: this.abort.signal });
  }

  private async tour(): Promise<void> {
    const { teamwork, missive, connector } = this.stack;
    const db = connector.db;
    if (db === null) throw new Error('the connector has no database');
    const site = teamwork.data();
    const org = missive.data();
    const someone = site.users.find((u) => u.id !== teamwork.credentials.userId) ?? site.users[0];
    const tag = site.tags[0];
    const label = org.labels[0];
    const seconds = (since: number) => Math.max(1, Math.round((Date.now() - since) / 1000));

    this.feed.add(`Scripted tour: every behaviour in about ${Math.round((12 * this.options.stepMs) / 1000)} s; reconciliation every ${Math.round(this.options.reconcileEveryMs / 1000)} s.`);

    const launch = await teamwork.createTask({
      name: 'Draft the launch checklist',
      description: 'Made by the demo: created, updated, then completed.',
      priority: 'medium',
      assigneeUserIds: someone ? [someone.id] : [],
      tagIds: tag ? [tag.id] : [],
    });
    await this.pause();

    const contract = await missive.receiveEmail({ subject: 'Signed contract and invoice 2024-117', from: { name: 'Ana Lima', address: 'ana.lima@example.net' }, attachments: 2 });
    await this.pause();

    await teamwork.updateTask(launch.id, { name: 'Draft the launch checklist (v2)', priority: 'high', progress: 40 });
    await this.pause();

    // A lost webhook: the change happens in Teamwork, its delivery never leaves.
    const victim = site.tasks.filter((t) => t.status !== 'deleted' && t.status !== 'completed' && t.id !== launch.id).sort((a, b) => a.id - b.id)[0];
    if (victim !== undefined) {
      const renamed = `${victim.name.split(' · ')[0]} · renamed while its webhook was lost`;
      this.told();
      this.feed.add(`Simulating a lost webhook: the next Teamwork change happens, but its delivery is dropped.`);
      teamwork.faults.set({ dropRate: 1 });
      let changedAt: number;
      try {
        changedAt = Date.now();
        await teamwork.updateTask(victim.id, { name: renamed });
      } finally {
        teamwork.faults.set({ dropRate: 0 });
      }
      this.told();
      this.watches.push({
        since: changedAt,
        check: async () => {
          const stored = await db.getTask(String(victim.id));
          if (stored?.title !== renamed) return null;
          const carried = teamwork.deliveries.some((d: Delivery) => d.at >= changedAt && d.outcome === 'sent' && teamworkTaskId(d) === victim.id);
          return carried
            ? `Teamwork: the change behind the dropped webhook (task ${victim.id}) arrived with a later webhook`
            : `RECOVERED: the dropped webhook's change (task ${victim.id}) was found by reconciliation and stored, ${seconds(changedAt)} s after it was made`;
        },
      });
    }
    await this.pause();

    const parcel = await missive.receiveEmail({ subject: 'Your parcel is on its way', from: { name: 'Parcel Service', address: 'noreply@parcels.example.org' } });
    await this.pause();
    const delivered = await missive.receiveEmail({ conversationId: parcel.conversation.id, subject: 'Your parcel was delivered', from: { name: 'Parcel Service', address: 'noreply@parcels.example.org' } });
    await this.pause();

    if (label !== undefined) {
      await missive.addLabel(contract.conversation.id, label.id);
      await this.pause();
    }
    await missive.addComment(contract.conversation.id, { body: 'Forwarded the invoice to accounting.' });
    await this.pause();

    // Trash: Missive sends no webhook for it; reconciliation sees the conversation in the Trash.
    const trashedAt = Date.now();
    await missive.trashConversation(parcel.conversation.id);
    const messageIds = [parcel.message.id, delivered.message.id];
    this.told();
    this.feed.add(`Missive: conversation "Your parcel…" trashed (Missive sends no webhook for this; reconciliation will see it)`);
    this.watches.push({
      since: trashedAt,
      check: async () => {
        const emails = await Promise.all(messageIds.map((id) => db.getEmail(id)));
        if (!emails.every((e) => e?.deleted === true)) return null;
        return `Missive: conversation trashed -> ${emails.length} emails marked deleted by reconciliation, ${seconds(trashedAt)} s later`;
      },
    });
    await this.pause();

    await teamwork.completeTask(launch.id);
    await this.pause();
    const venue = await teamwork.createTask({ name: 'Book the venue (to be cancelled)', priority: 'low' });
    await this.pause();
    await teamwork.deleteTask(venue.id);
    await this.pause();
    this.told();
  }

  private steadyActivity(): void {
    if (this.stopped) return;
    const { teamworkPerMinute, missivePerMinute } = this.options;
    this.stack.teamwork.startActivity(teamworkPerMinute);
    this.stack.missive.startActivity(missivePerMinute);
    this.feed.add(`Tour done. Now random activity: Teamwork ${teamworkPerMinute} and Missive ${missivePerMinute} changes a minute.`);
  }
}
