/**
 * Tells what happened in the simulated Teamwork and Missive, from the webhooks they sent: each new
 * delivery in a simulator's delivery log becomes one line of the feed ("task 123 "…" completed",
 * "email "…" arrived"), and a dropped one says so. Changes that send no webhook (a trashed
 * conversation) are told by the scenario instead.
 *
 * The logs only grow at their end (oldest entries fall off the front past their capacity), so the
 * narrator remembers the last entry it told and, on each look, walks back from the end to it.
 */
import type { Delivery } from '../simulators/index.ts';
import type { Feed } from './tally.ts';

const TASK_VERBS: Record<string, string> = {
  'TASK.CREATED': 'created',
  'TASK.UPDATED': 'updated',
  'TASK.COMPLETED': 'completed',
  'TASK.REOPENED': 'reopened',
  'TASK.DELETED': 'deleted',
  'TASK.MOVED': 'moved to another list',
  'TASK.TAGGED': 'tagged',
  'TASK.UNTAGGED': 'untagged',
  'TASK.ASSIGNED': 'assigned',
};

/** Watches one simulator's delivery log. */
export class DeliveryNarrator {
  private last: Delivery | null;

  /**
   * @param deliveries the simulator's log, read on each `look()`
   * @param describe one line for a delivery, or null to leave it out
   */
  constructor(
    private readonly deliveries: () => readonly Delivery[],
    private readonly describe: (delivery: Delivery) => string | null,
    private readonly feed: Feed,
  ) {
    const log = deliveries();
    this.last = log[log.length - 1] ?? null;
  }

  /** Adds a line for every delivery made since the last look. */
  look(): void {
    const log = this.deliveries();
    const fresh: Delivery[] = [];
    for (let i = log.length - 1; i >= 0; i--) {
      const entry = log[i] as Delivery;
      if (entry === this.last) break;
      fresh.push(entry);
    }
    if (log.length > 0) this.last = log[log.length - 1] as Delivery;
    for (const delivery of fresh.reverse()) {
      // Retries and duplicates of a delivery already told, and deliveries held back, say nothing new.
      if (delivery.attempt !== 1 || delivery.duplicate || delivery.outcome === 'held') continue;
      const line = this.describe(delivery);
      if (line !== null) this.feed.add(line);
    }
  }
}

function parse(body: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(body);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

function quoted(text: unknown, max = 48): string {
  const s = typeof text === 'string' && text.trim() !== '' ? text.trim() : '(no subject)';
  return `"${s.length > max ? `${s.slice(0, max - 1)}…` : s}"`;
}

/** The task id a Teamwork delivery is about (v2 JSON body, the id-only delete body), or null. */
export function teamworkTaskId(delivery: Delivery): number | null {
  const body = parse(delivery.body);
  const id = record(body?.task).id ?? body?.id;
  return typeof id === 'number' ? id : typeof id === 'string' && /^\d+$/.test(id) ? Number(id) : null;
}

export function describeTeamworkDelivery(delivery: Delivery): string | null {
  const body = parse(delivery.body);
  const task = record(body?.task);
  const id = teamworkTaskId(delivery);
  const verb = TASK_VERBS[delivery.event] ?? delivery.event.toLowerCase();
  const name = typeof task.name === 'string' ? ` ${quoted(task.name)}` : '';
  const what = `task ${id ?? '?'}${name}`;
  if (delivery.outcome === 'dropped') return `Teamwork: webhook ${delivery.event} for ${what} was DROPPED (simulated loss)`;
  const refused = delivery.outcome === 'failed' || (delivery.status !== null && delivery.status !== 200) ? ` (delivery ${delivery.status ?? delivery.error})` : '';
  return `Teamwork: ${what} ${verb}${refused}`;
}

export function describeMissiveDelivery(delivery: Delivery): string | null {
  const body = parse(delivery.body);
  if (body === null) return null;
  const conversation = record(body.conversation);
  const message = record(body.message ?? body.latest_message);
  const subject = quoted(message.subject ?? conversation.latest_message_subject ?? conversation.subject);
  const from = record(message.from_field).address;
  const attachments = typeof conversation.attachments_count === 'number' ? conversation.attachments_count : 0;
  const withFiles = attachments > 0 ? `, ${attachments} attachment${attachments === 1 ? '' : 's'} in the conversation` : '';
  let line: string;
  switch (delivery.event) {
    case 'incoming_email':
      line = `email ${subject} arrived${typeof from === 'string' ? ` from ${from}` : ''}${withFiles}`;
      break;
    case 'outgoing_email':
      line = `email ${subject} sent${withFiles}`;
      break;
    case 'label_change': {
      const labels = typeof conversation.shared_label_names === 'string' && conversation.shared_label_names !== '' ? conversation.shared_label_names : 'none';
      line = `labels of ${subject} changed (now: ${labels})`;
      break;
    }
    case 'new_comment':
      line = `comment on ${subject}`;
      break;
    case 'conversation_closed':
      line = `conversation ${subject} closed`;
      break;
    case 'conversation_reopened':
      line = `conversation ${subject} reopened`;
      break;
    case 'conversation_assignee_change':
      line = `assignees of ${subject} changed`;
      break;
    case 'team_change':
      line = `conversation ${subject} moved to another team`;
      break;
    default:
      line = `${delivery.event.replace(/_/g, ' ')} on ${subject}`;
  }
  if (delivery.outcome === 'dropped') return `Missive: rule delivery (${delivery.event}) was DROPPED (simulated loss): ${line}`;
  return `Missive: ${line}`;
}
