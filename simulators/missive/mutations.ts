/**
 * Changes to a Missive organization, made the way Missive makes them: each writes new conversation (and
 * message) versions, shown by the API after the consistency delay if any, and then sends the deliveries
 * of the matching rule type. Trash and restore flip `users[].trashed` for everyone and send nothing (no
 * rule type exists for them, reference 1.2). Each resolves once the first delivery attempts are done.
 * Messages and comments move `last_activity_at`; other actions do only with the `actionsBumpActivity`
 * quirk.
 */
import type { FaultControl, SimClock } from '../common.ts';
import { makeAttachment, messageIdHeader, ORG_DOMAIN } from '../generator/missive.ts';
import type { Random } from '../generator/random.ts';
import { htmlBody, previewOf } from '../generator/text.ts';
import type { MissiveHooks } from './hooks.ts';
import {
  defaultFlags,
  unixSeconds,
  type MvAddress,
  type MvAttachment,
  type MvComment,
  type MvConversation,
  type MvMessage,
  type RuleType,
} from './model.ts';
import type { MissiveQuirks } from './payloads.ts';
import type { MissiveState } from './state.ts';

export interface EmailInput {
  /** Reply in this conversation; omit to start a new one. */
  conversationId?: string;
  subject?: string | null;
  from?: MvAddress;
  to?: MvAddress[];
  cc?: MvAddress[];
  bcc?: MvAddress[];
  replyTo?: MvAddress[];
  /** HTML body; default a generated one. */
  html?: string;
  /** A number of generated attachments, or explicit ones (without ids). Default 0. */
  attachments?: number | Array<Omit<MvAttachment, 'id'>>;
  /** Team of a new conversation; default none. */
  teamId?: string | null;
  /** Sending user (outgoing); default the token's user. */
  authorId?: string;
}

export interface CommentInput {
  body: string;
  /** Default the token's user. */
  authorId?: string;
  mentions?: MvComment['mentions'];
  /** Attach a generated file. */
  withAttachment?: boolean;
}

export interface EmailResult {
  conversation: MvConversation;
  message: MvMessage;
}

export class MissiveMutations {
  constructor(
    private readonly state: MissiveState,
    private readonly hooks: MissiveHooks,
    private readonly faults: FaultControl,
    private readonly clock: SimClock,
    private readonly quirks: MissiveQuirks,
    private readonly random: Random,
  ) {}

  /** An email arrives (new conversation or reply): `incoming_email`. */
  async receiveEmail(input: EmailInput = {}): Promise<EmailResult> {
    return this.addMessage('incoming', input);
  }

  /** A user sends an email: `outgoing_email`. */
  async sendEmail(input: EmailInput = {}): Promise<EmailResult> {
    return this.addMessage('outgoing', input);
  }

  async addLabel(conversationId: string, labelId: string): Promise<MvConversation> {
    if (!this.state.labels.has(labelId)) throw new Error(`label ${labelId} not found`);
    const c = this.existing(conversationId);
    if (c.labelIds.includes(labelId)) throw new Error(`conversation ${conversationId} already has label ${labelId}`);
    return this.commitAction('label_change', { ...c, labelIds: [...c.labelIds, labelId] });
  }

  async removeLabel(conversationId: string, labelId: string): Promise<MvConversation> {
    const c = this.existing(conversationId);
    if (!c.labelIds.includes(labelId)) throw new Error(`conversation ${conversationId} has no label ${labelId}`);
    return this.commitAction('label_change', { ...c, labelIds: c.labelIds.filter((id) => id !== labelId) });
  }

  async addComment(conversationId: string, input: CommentInput): Promise<{ conversation: MvConversation; comment: MvComment }> {
    const c = this.existing(conversationId);
    const authorId = input.authorId ?? this.state.meId;
    if (!this.state.users.has(authorId)) throw new Error(`user ${authorId} not found`);
    const now = unixSeconds(this.clock.now());
    const comment: MvComment = {
      id: this.random.uuid(),
      conversationId,
      body: input.body,
      createdAt: now,
      authorId,
      mentions: input.mentions ?? [],
      attachment: input.withAttachment ? makeAttachment(this.random) : null,
    };
    this.state.comments.set(comment.id, comment);
    const next: MvConversation = { ...c, commentIds: [...c.commentIds, comment.id], lastActivityAt: Math.max(c.lastActivityAt, now) };
    this.put(next);
    await this.hooks.emit('new_comment', next, { comment });
    return { conversation: next, comment };
  }

  /** Closing is shared: every user's `closed` flag. */
  async closeConversation(conversationId: string): Promise<MvConversation> {
    const c = this.existing(conversationId);
    if (Object.values(c.flags).every((f) => f.closed)) throw new Error(`conversation ${conversationId} is already closed`);
    return this.commitAction('conversation_closed', this.withFlag(c, 'closed', true));
  }

  async reopenConversation(conversationId: string): Promise<MvConversation> {
    const c = this.existing(conversationId);
    if (!Object.values(c.flags).some((f) => f.closed)) throw new Error(`conversation ${conversationId} is not closed`);
    return this.commitAction('conversation_reopened', this.withFlag(c, 'closed', false));
  }

  async assign(conversationId: string, userIds: string[]): Promise<MvConversation> {
    for (const id of userIds) if (!this.state.users.has(id)) throw new Error(`user ${id} not found`);
    const c = this.existing(conversationId);
    return this.commitAction('conversation_assignee_change', { ...c, assigneeIds: [...userIds] });
  }

  async setTeam(conversationId: string, teamId: string | null): Promise<MvConversation> {
    if (teamId !== null && !this.state.teams.has(teamId)) throw new Error(`team ${teamId} not found`);
    const c = this.existing(conversationId);
    return this.commitAction('team_change', { ...c, teamId });
  }

  /** Moves the conversation to everyone's Trash. No webhook (no rule type exists). */
  async trashConversation(conversationId: string): Promise<MvConversation> {
    return this.commitAction(null, this.withFlag(this.existing(conversationId), 'trashed', true));
  }

  /** Takes the conversation out of everyone's Trash. No webhook. */
  async restoreConversation(conversationId: string): Promise<MvConversation> {
    return this.commitAction(null, this.withFlag(this.existing(conversationId), 'trashed', false));
  }

  /** One random change, as a busy team would make (the activity loop). */
  async randomChange(random: Random): Promise<unknown> {
    const conversations = this.state.conversations.latestAll().filter((c) => !c.guest);
    const roll = random.next();
    const some = () => random.pick(conversations);
    if (conversations.length === 0 || roll < 0.3) {
      return this.receiveEmail({ conversationId: conversations.length > 0 && random.chance(0.4) ? some().id : undefined, attachments: random.chance(0.3) ? random.int(1, 2) : 0 });
    }
    if (roll < 0.45) return this.sendEmail({ conversationId: some().id, attachments: random.chance(0.2) ? 1 : 0 });
    const c = some();
    const labels = [...this.state.labels.keys()];
    if (roll < 0.6) {
      const missing = labels.filter((id) => !c.labelIds.includes(id));
      return missing.length > 0 && (c.labelIds.length === 0 || random.chance(0.6))
        ? this.addLabel(c.id, random.pick(missing))
        : this.removeLabel(c.id, random.pick(c.labelIds));
    }
    if (roll < 0.72) return this.addComment(c.id, { body: `Note ${random.hex(4)}: bitte prüfen ✅`, authorId: random.pick([...this.state.users.keys()]) });
    if (roll < 0.82) return Object.values(c.flags).some((f) => f.closed) ? this.reopenConversation(c.id) : this.closeConversation(c.id);
    if (roll < 0.88) return this.assign(c.id, random.sample([...this.state.users.keys()], random.int(0, 2)));
    if (roll < 0.92) return this.setTeam(c.id, random.pick([...this.state.teams.keys()]));
    return Object.values(c.flags).some((f) => f.trashed) ? this.restoreConversation(c.id) : this.trashConversation(c.id);
  }

  private async addMessage(direction: 'incoming' | 'outgoing', input: EmailInput): Promise<EmailResult> {
    const now = unixSeconds(this.clock.now());
    const previousConversation = input.conversationId ? this.existing(input.conversationId) : null;
    const thread = previousConversation ? previousConversation.messageIds.map((id) => this.state.messages.latest(id)).filter((m): m is MvMessage => m !== undefined) : [];
    const previous = thread[thread.length - 1] ?? null;
    const author = this.state.users.get(input.authorId ?? this.state.meId);
    if (!author) throw new Error(`user ${input.authorId} not found`);
    const external: MvAddress = previous
      ? previous.direction === 'incoming' ? previous.from : (previous.to[0] ?? { name: null, address: 'someone@example.com' })
      : { name: null, address: `sender-${this.random.hex(6)}@example.net` };
    const attachments = this.attachments(input.attachments);
    const inline = attachments.filter((a) => a.mediaType === 'image').map((a) => a.id);
    const body = input.html ?? htmlBody(this.random, { inlineAttachmentIds: inline, quote: previous?.preview ?? null });
    const baseSubject = previous?.subject?.replace(/^(Re: )+/, '') ?? null;
    const from = input.from ?? (direction === 'incoming' ? external : { name: author.name, address: author.email });
    const message: MvMessage = {
      id: this.random.uuid(),
      conversationId: previousConversation?.id ?? this.random.uuid(),
      direction,
      subject: input.subject !== undefined ? input.subject : baseSubject === null ? 'Neue Anfrage – 新しい問い合わせ' : `Re: ${baseSubject}`,
      preview: previewOf(body),
      body,
      deliveredAt: now,
      createdAt: now,
      updatedAt: now,
      emailMessageId: messageIdHeader(this.random, direction === 'incoming' ? (from.address.split('@')[1] ?? 'example.net') : 'missiveapp.com'),
      inReplyTo: previous ? [previous.emailMessageId] : [],
      references: previous ? [...previous.references, previous.emailMessageId] : [],
      from,
      to: input.to ?? (direction === 'incoming' ? [{ name: null, address: `inbox@${ORG_DOMAIN}` }] : [external]),
      cc: input.cc ?? [],
      bcc: input.bcc ?? [],
      replyTo: input.replyTo ?? [],
      attachments,
      authorId: direction === 'outgoing' ? author.id : null,
    };
    const users = [...this.state.users.keys()];
    const conversation: MvConversation = previousConversation
      ? { ...previousConversation, messageIds: [...previousConversation.messageIds, message.id], lastActivityAt: Math.max(previousConversation.lastActivityAt, now) }
      : {
          id: message.conversationId,
          createdAt: now,
          subject: null,
          organizationId: this.state.organization.id,
          teamId: input.teamId ?? null,
          color: null,
          userIds: users,
          flags: Object.fromEntries(users.map((id) => [id, defaultFlags()])),
          assigneeIds: [],
          labelIds: [],
          messageIds: [message.id],
          commentIds: [],
          lastActivityAt: now,
          draftsCount: 0,
          sendLaterMessagesCount: 0,
          tasksCount: 0,
          completedTasksCount: 0,
          guest: false,
        };
    const delay = this.faults.get().consistencyDelayMs;
    this.state.putMessage(message, delay);
    this.put(conversation);
    await this.hooks.emit(direction === 'incoming' ? 'incoming_email' : 'outgoing_email', conversation, { message });
    return { conversation, message };
  }

  private attachments(spec: EmailInput['attachments']): MvAttachment[] {
    if (spec === undefined || spec === 0) return [];
    if (typeof spec === 'number') return Array.from({ length: spec }, () => makeAttachment(this.random));
    return spec.map((a) => ({ ...a, id: this.random.uuid() }));
  }

  private async commitAction(type: RuleType | null, next: MvConversation): Promise<MvConversation> {
    const bumped = this.quirks.actionsBumpActivity ? { ...next, lastActivityAt: Math.max(next.lastActivityAt, unixSeconds(this.clock.now())) } : next;
    this.put(bumped);
    if (type !== null) await this.hooks.emit(type, bumped);
    return bumped;
  }

  private withFlag(c: MvConversation, flag: 'closed' | 'trashed', value: boolean): MvConversation {
    const flags = Object.fromEntries(Object.entries(c.flags).map(([id, f]) => [id, { ...f, [flag]: value }]));
    return { ...c, flags };
  }

  private put(conversation: MvConversation): void {
    this.state.conversations.put(conversation.id, conversation, this.faults.get().consistencyDelayMs);
  }

  private existing(id: string): MvConversation {
    const c = this.state.conversations.latest(id);
    if (!c) throw new Error(`conversation ${id} not found`);
    return c;
  }
}
