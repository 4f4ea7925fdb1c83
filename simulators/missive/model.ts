/**
 * The Missive simulator's own records, from which every wire format (REST conversation rows, message
 * rows and full messages, webhook deliveries) is rendered in `payloads.ts`. Times are unix seconds, as
 * Missive sends them everywhere (reference 5.7). Per-user state (closed, archived, trashed, ...) is kept
 * per user, as Missive keeps it (reference 1.5.1).
 */

/** Rule types the simulator sends (reference 1.2). */
export const RULE_TYPES = [
  'incoming_email',
  'outgoing_email',
  'label_change',
  'new_comment',
  'conversation_closed',
  'conversation_reopened',
  'conversation_assignee_change',
  'team_change',
] as const;
export type RuleType = (typeof RULE_TYPES)[number];

export interface MvOrganization {
  id: string;
  name: string;
}

export interface MvTeam {
  id: string;
  name: string;
  organizationId: string;
}

export interface MvUser {
  id: string;
  name: string;
  email: string;
  avatarUrl: string;
}

export interface MvLabel {
  id: string;
  name: string;
  parentId: string | null;
}

export interface MvAddress {
  name: string | null;
  address: string;
}

export interface MvAttachment {
  id: string;
  filename: string;
  extension: string;
  /** Top-level type, e.g. `image`. */
  mediaType: string;
  /** e.g. `png`. */
  subType: string;
  /** Bytes. */
  size: number;
  width?: number;
  height?: number;
}

export interface MvMessage {
  id: string;
  conversationId: string;
  direction: 'incoming' | 'outgoing';
  subject: string | null;
  preview: string;
  /** HTML. */
  body: string;
  deliveredAt: number;
  createdAt: number;
  updatedAt: number;
  /** RFC 5322 Message-ID with angle brackets. */
  emailMessageId: string;
  inReplyTo: string[];
  references: string[];
  from: MvAddress;
  to: MvAddress[];
  cc: MvAddress[];
  bcc: MvAddress[];
  replyTo: MvAddress[];
  attachments: MvAttachment[];
  /** The Missive user who sent it (outgoing only). */
  authorId: string | null;
}

export interface MvComment {
  id: string;
  conversationId: string;
  body: string;
  createdAt: number;
  authorId: string;
  mentions: Array<{ user_id: string; offset: number; length: number }>;
  attachment: MvAttachment | null;
}

export interface MvUserFlags {
  closed: boolean;
  archived: boolean;
  trashed: boolean;
  junked: boolean;
  flagged: boolean;
  snoozed: boolean;
}

export interface MvConversation {
  id: string;
  createdAt: number;
  /** User-set subject; null unless renamed (reference 1.5.1). */
  subject: string | null;
  organizationId: string;
  teamId: string | null;
  color: string | null;
  /** Users with access, in display order. */
  userIds: string[];
  flags: Record<string, MvUserFlags>;
  assigneeIds: string[];
  labelIds: string[];
  /** Oldest first. */
  messageIds: string[];
  commentIds: string[];
  lastActivityAt: number;
  draftsCount: number;
  sendLaterMessagesCount: number;
  tasksCount: number;
  completedTasksCount: number;
  /** The token's user is only a guest: list rows and GET show just `id` and `last_activity_at`. */
  guest: boolean;
}

export interface MvRule {
  id: string;
  description: string;
  type: RuleType;
  url: string;
  /** Signing secret; null for an API hook created without one (deliveries then carry no signature). */
  secret: string | null;
  /** Where the message goes in deliveries; null for the default of the rule type. */
  messageKey: MessageKey | null;
  /** `rule`: created like a rule in the UI; `api`: through POST /v1/hooks. */
  origin: 'rule' | 'api';
  active: boolean;
  consecutiveFailures: number;
  createdAt: number;
}

/**
 * `message`, `latest_message`, or `both` (`message` in full and `latest_message` with the subset
 * `id`, `references`, `to_fields` that reference 1.4 reports from real deliveries).
 */
export type MessageKey = 'message' | 'latest_message' | 'both';

export interface MissiveData {
  organization: MvOrganization;
  teams: MvTeam[];
  users: MvUser[];
  labels: MvLabel[];
  conversations: MvConversation[];
  messages: MvMessage[];
  comments: MvComment[];
  /** The token's user. */
  meId: string;
}

export function unixSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}

export function defaultFlags(): MvUserFlags {
  return { closed: false, archived: false, trashed: false, junked: false, flagged: false, snoozed: false };
}
