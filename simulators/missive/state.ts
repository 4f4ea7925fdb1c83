/**
 * The Missive organization the simulator serves. Conversations and messages live in `VersionedStore`s,
 * so that with a consistency delay the API serves the previous conversation (without the new message,
 * label or state) while the webhook is already out. Users, teams, labels and comments are plain maps;
 * rules (webhooks) are plain records.
 */
import { VersionedStore, type SimClock } from '../common.ts';
import type { MissiveData, MvComment, MvConversation, MvLabel, MvMessage, MvOrganization, MvRule, MvTeam, MvUser } from './model.ts';

export class MissiveState {
  readonly organization: MvOrganization;
  readonly users = new Map<string, MvUser>();
  readonly teams = new Map<string, MvTeam>();
  readonly labels = new Map<string, MvLabel>();
  readonly comments = new Map<string, MvComment>();
  readonly conversations: VersionedStore<MvConversation>;
  readonly messages: VersionedStore<MvMessage>;
  readonly rules = new Map<string, MvRule>();
  /** Message ids by RFC Message-ID, for `GET /v1/messages?email_message_id=`. */
  readonly byMessageIdHeader = new Map<string, string[]>();
  readonly meId: string;

  constructor(data: MissiveData, clock: SimClock) {
    this.organization = data.organization;
    for (const u of data.users) this.users.set(u.id, u);
    for (const t of data.teams) this.teams.set(t.id, t);
    for (const l of data.labels) this.labels.set(l.id, l);
    for (const c of data.comments) this.comments.set(c.id, c);
    this.conversations = new VersionedStore<MvConversation>(clock);
    this.messages = new VersionedStore<MvMessage>(clock);
    for (const c of data.conversations) this.conversations.put(c.id, c);
    for (const m of data.messages) this.putMessage(m, 0);
    this.meId = data.meId;
  }

  putMessage(message: MvMessage, delayMs: number): void {
    this.messages.put(message.id, message, delayMs);
    const list = this.byMessageIdHeader.get(message.emailMessageId) ?? [];
    if (!list.includes(message.id)) list.push(message.id);
    this.byMessageIdHeader.set(message.emailMessageId, list);
  }

  snapshot(): MissiveData {
    return {
      organization: this.organization,
      teams: [...this.teams.values()],
      users: [...this.users.values()],
      labels: [...this.labels.values()],
      conversations: this.conversations.latestAll(),
      messages: this.messages.latestAll(),
      comments: [...this.comments.values()],
      meId: this.meId,
    };
  }
}
