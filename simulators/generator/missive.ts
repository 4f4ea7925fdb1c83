/**
 * A seeded Missive organization: users, teams, nested shared labels, external contacts (some without a
 * name), and conversations with threads (in_reply_to / references chains), cc/bcc, HTML bodies with
 * inline images and quoted history, attachments with non-ASCII filenames, non-ASCII subjects, comments,
 * and every per-user state (closed, trashed by everyone, flagged, snoozed, junked). Same seed and
 * anchor -> same data.
 */
import {
  defaultFlags,
  unixSeconds,
  type MissiveData,
  type MvAddress,
  type MvAttachment,
  type MvComment,
  type MvConversation,
  type MvLabel,
  type MvMessage,
  type MvTeam,
  type MvUser,
  type MvUserFlags,
} from '../missive/model.ts';
import { createRandom, type Random } from './random.ts';
import { PEOPLE, fileSpec, htmlBody, previewOf, subject, words } from './text.ts';

export interface MissiveGeneratorOptions {
  /** Default 1. */
  seed?: number | string;
  /** Time (ms) the newest generated activity is at or before; default now. Part of the reproducibility key. */
  anchor?: number;
  /** Default 6 (the first is the API token's user). */
  users?: number;
  /** Default 60. */
  conversations?: number;
  /** Most messages per conversation; default 6. */
  maxMessages?: number;
  /** Share of conversations where the token's user is only a guest; default 0. */
  guestShare?: number;
  /** How far back (ms) activity spreads; default 14 days. */
  spanMs?: number;
}

const DAY = 24 * 60 * 60 * 1000;
export const ORG_DOMAIN = 'example-org.com';

const CONTACTS: readonly MvAddress[] = [
  { name: 'Jane Customer', address: 'jane@customer.example' },
  { name: null, address: 'no-reply@billing.example' },
  { name: 'Müller, Jürgen', address: 'j.mueller@firma.example' },
  { name: '王芳', address: 'wang.fang@example.cn' },
  { name: 'Ελένη Παπαδοπούλου', address: 'eleni@example.gr' },
  { name: '"Quoted, Name"', address: 'quoted@example.net' },
  { name: null, address: 'support+ticket-5531@vendor.example' },
  { name: 'Émile Zola', address: 'emile@example.fr' },
];

/** An attachment record drawn from the seeded sequence. */
export function makeAttachment(random: Random): MvAttachment {
  const spec = fileSpec(random);
  const attachment: MvAttachment = {
    id: random.uuid(),
    filename: spec.filename,
    extension: spec.extension,
    mediaType: spec.mediaType,
    subType: spec.subType,
    size: random.int(200, 120_000),
  };
  if (spec.width !== undefined) attachment.width = spec.width;
  if (spec.height !== undefined) attachment.height = spec.height;
  return attachment;
}

export function messageIdHeader(random: Random, domain: string): string {
  return `<${random.hex(24)}@${domain}>`;
}

export function generateMissiveData(options: MissiveGeneratorOptions = {}): MissiveData {
  const seed = options.seed ?? 1;
  const anchor = unixSeconds(options.anchor ?? Date.now());
  const span = Math.floor((options.spanMs ?? 14 * DAY) / 1000);
  const random = createRandom(`missive/${seed}`);

  const organization = { id: random.uuid(), name: 'Example Org' };
  const users: MvUser[] = [];
  const userCount = options.users ?? 6;
  for (let i = 0; i < userCount; i++) {
    const person = PEOPLE[(i * 5) % PEOPLE.length] as { first: string; last: string };
    const id = random.uuid();
    users.push({
      id,
      name: `${person.first} ${person.last}`,
      email: `user${i + 1}@${ORG_DOMAIN}`,
      avatarUrl: `https://avatars.missiveapp.com/${id}.png`,
    });
  }
  const teams: MvTeam[] = [
    { id: random.uuid(), name: 'Support', organizationId: organization.id },
    { id: random.uuid(), name: 'Ventes & Marketing', organizationId: organization.id },
  ];
  const labels: MvLabel[] = [];
  for (const name of ['Clients', 'Rechnungen', '重要', 'Follow-up', 'Spam-ish']) labels.push({ id: random.uuid(), name, parentId: null });
  labels.push({ id: random.uuid(), name: 'VIP', parentId: (labels[0] as MvLabel).id });

  const conversations: MvConversation[] = [];
  const messages: MvMessage[] = [];
  const comments: MvComment[] = [];
  const count = options.conversations ?? 60;
  for (let c = 0; c < count; c++) {
    const r = random.fork(`conversation-${c}`);
    const contact = r.pick(CONTACTS);
    const team = r.chance(0.7) ? r.pick(teams) : null;
    const baseSubject = subject(r);
    const n = r.int(1, options.maxMessages ?? 6);
    // Activity time: mostly distinct, but a few conversations share a second (pagination ties).
    let t = anchor - r.int(0, span);
    if (c > 0 && r.chance(0.1)) t = (conversations[c - 1] as MvConversation).lastActivityAt;
    const createdAt = t - r.int(60, 3 * 24 * 3600) * (n - 1) - 1;
    const conversation: MvConversation = {
      id: r.uuid(),
      createdAt,
      subject: r.chance(0.1) ? `Renamed: ${words(r, 2)}` : null,
      organizationId: organization.id,
      teamId: team?.id ?? null,
      color: r.chance(0.2) ? r.pick(['#ff6961', '#77dd77', '#aec6cf']) : null,
      userIds: users.map((u) => u.id),
      flags: Object.fromEntries(users.map((u) => [u.id, defaultFlags()])),
      assigneeIds: r.chance(0.5) ? r.sample(users, r.int(1, 2)).map((u) => u.id) : [],
      labelIds: r.sample(labels, r.pick([0, 0, 1, 1, 2])).map((l) => l.id),
      messageIds: [],
      commentIds: [],
      lastActivityAt: t,
      draftsCount: 0,
      sendLaterMessagesCount: 0,
      tasksCount: 0,
      completedTasksCount: 0,
      guest: r.chance(options.guestShare ?? 0),
    };
    let previous: MvMessage | null = null;
    for (let m = 0; m < n; m++) {
      const deliveredAt = m === n - 1 ? t : createdAt + Math.floor(((t - createdAt) * (m + 1)) / n);
      const outgoing = m % 2 === 1 && r.chance(0.8);
      const author = r.pick(users);
      const attachments: MvAttachment[] = r.chance(0.35) ? Array.from({ length: r.int(1, 3) }, () => makeAttachment(r)) : [];
      const inline = attachments.filter((a) => a.mediaType === 'image').map((a) => a.id);
      const body = htmlBody(r, { inlineAttachmentIds: inline, quote: previous ? previous.preview : null });
      const from: MvAddress = outgoing ? { name: author.name, address: author.email } : contact;
      const to: MvAddress[] = outgoing ? [contact] : [{ name: team?.name ?? null, address: `inbox@${ORG_DOMAIN}` }];
      const message: MvMessage = {
        id: r.uuid(),
        conversationId: conversation.id,
        direction: outgoing ? 'outgoing' : 'incoming',
        subject: m === 0 ? baseSubject : `Re: ${baseSubject}`,
        preview: previewOf(body),
        body,
        deliveredAt,
        createdAt: deliveredAt,
        updatedAt: deliveredAt,
        emailMessageId: messageIdHeader(r, outgoing ? 'missiveapp.com' : contact.address.split('@')[1] as string),
        inReplyTo: previous ? [previous.emailMessageId] : [],
        references: previous ? [...previous.references, previous.emailMessageId] : [],
        from,
        to,
        cc: r.chance(0.3) ? r.sample(CONTACTS.filter((x) => x !== contact), r.int(1, 2)) : [],
        bcc: outgoing && r.chance(0.2) ? [{ name: null, address: `archive@${ORG_DOMAIN}` }] : [],
        replyTo: !outgoing && r.chance(0.1) ? [{ name: null, address: `replies@${contact.address.split('@')[1]}` }] : [],
        attachments,
        authorId: outgoing ? author.id : null,
      };
      messages.push(message);
      conversation.messageIds.push(message.id);
      previous = message;
    }
    if (r.chance(0.2)) {
      const author = r.pick(users);
      const mentioned = r.pick(users);
      const body = `@${mentioned.name} ${words(r, 6)}`;
      const comment: MvComment = {
        id: r.uuid(),
        conversationId: conversation.id,
        body,
        createdAt: t,
        authorId: author.id,
        mentions: [{ user_id: mentioned.id, offset: 0, length: mentioned.name.length + 1 }],
        attachment: r.chance(0.2) ? makeAttachment(r) : null,
      };
      comments.push(comment);
      conversation.commentIds.push(comment.id);
    }
    const roll = r.next();
    const setAll = (flag: 'closed' | 'trashed') => {
      for (const id of conversation.userIds) (conversation.flags[id] as MvUserFlags)[flag] = true;
    };
    const me = conversation.flags[(users[0] as MvUser).id] as MvUserFlags;
    if (roll < 0.25) setAll('closed');
    else if (roll < 0.32) setAll('trashed');
    else if (roll < 0.36) me.junked = true;
    else if (roll < 0.42) me.flagged = true;
    else if (roll < 0.45) me.snoozed = true;
    else if (roll < 0.5) me.archived = true;
    conversations.push(conversation);
  }

  return { organization, teams, users, labels, conversations, messages, comments, meId: (users[0] as MvUser).id };
}
