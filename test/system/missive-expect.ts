/**
 * What a stored email must look like, computed from the Missive simulator's own records of the message
 * and its conversation (not from the product's mapping). `bodyText` and `updatedAt` are the product's
 * own derivations (HTML to text; the observed-state version) and are checked separately by the tests.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Address, Email } from '../../src/model.ts';
import type { MissiveSimulator, MvAddress, MvMessage } from '../../simulators/missive/index.ts';

export type ComparableEmail = Omit<Email, 'bodyText' | 'updatedAt' | 'raw' | 'conversationUrl' | 'attachments' | 'preview'> & {
  attachments: Array<{ id: string; filename: string | null; mediaType: string | null; size: number | null }>;
};

const address = (a: MvAddress): Address => ({ name: a.name, address: a.address });

/** The canonical email for `messageId` as the simulator knows it now. */
export function expectedEmail(sim: MissiveSimulator, messageId: string): ComparableEmail {
  const data = sim.data();
  const message = data.messages.find((m) => m.id === messageId) as MvMessage | undefined;
  if (message === undefined) throw new Error(`simulator has no message ${messageId}`);
  const conversation = sim.conversation(message.conversationId);
  if (conversation === undefined) throw new Error(`simulator has no conversation ${message.conversationId}`);
  const users = conversation.userIds;
  const deleted = users.length > 0 && users.every((id) => conversation.flags[id]?.trashed === true);
  return {
    id: message.id,
    conversationId: conversation.id,
    subject: message.subject,
    fromName: message.from.name,
    fromAddress: message.from.address,
    to: message.to.map(address),
    cc: message.cc.map(address),
    bcc: message.bcc.map(address),
    replyTo: message.replyTo.map(address),
    bodyHtml: message.body,
    deliveredAt: new Date(message.deliveredAt * 1000),
    createdAt: new Date(message.createdAt * 1000),
    messageIdHeader: message.emailMessageId,
    inReplyTo: message.inReplyTo,
    references: message.references,
    labels: conversation.labelIds.map((id) => data.labels.find((l) => l.id === id)?.name ?? `?${id}`),
    assignees: conversation.assigneeIds.map((id) => {
      const user = data.users.find((u) => u.id === id);
      return { id, name: user?.name ?? null, email: user?.email ?? null };
    }),
    draft: false,
    deleted,
    deletedAt: null,
    attachments: message.attachments.map((a) => ({ id: a.id, filename: a.filename, mediaType: `${a.mediaType}/${a.subType}`, size: a.size })),
  };
}

/** The stored email in the same shape (deletedAt reduced to null: it is the product's version time). */
export function comparableEmail(row: Email): ComparableEmail {
  const { bodyText: _t, updatedAt: _u, raw: _r, conversationUrl: _c, preview: _p, attachments, deletedAt: _d, ...rest } = row;
  return {
    ...rest,
    deletedAt: null,
    attachments: attachments.map((a) => ({ id: a.id, filename: a.filename, mediaType: a.mediaType, size: a.size })),
  };
}

export function emailMatches(sim: MissiveSimulator, row: Email | null, messageId: string): boolean {
  return row !== null && isDeepStrictEqual(comparableEmail(row), expectedEmail(sim, messageId));
}
