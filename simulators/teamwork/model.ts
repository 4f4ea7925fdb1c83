/**
 * The Teamwork simulator's own records: one neutral shape per entity, from which every wire format
 * (v3 REST, v1 REST, v2 webhook JSON and Form, v1 webhook Form) is rendered in `payloads.ts`.
 * Times are ms since the epoch, whole seconds (Teamwork's timestamps have second precision). Date-only
 * fields are `YYYY-MM-DD` strings.
 */

export const TASK_STATUSES = ['new', 'reopened', 'completed', 'deleted'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const TASK_PRIORITIES = ['low', 'medium', 'high'] as const;
export type TaskPriority = (typeof TASK_PRIORITIES)[number];

/** The task events a webhook can be registered for and the simulator sends. */
export const TASK_EVENTS = [
  'TASK.CREATED',
  'TASK.UPDATED',
  'TASK.COMPLETED',
  'TASK.REOPENED',
  'TASK.DELETED',
  'TASK.MOVED',
  'TASK.TAGGED',
  'TASK.UNTAGGED',
] as const;
export type TaskEvent = (typeof TASK_EVENTS)[number];

export interface TwCompany {
  id: number;
  name: string;
}

export interface TwUser {
  id: number;
  firstName: string;
  lastName: string;
  email: string;
  title: string;
  companyId: number;
  isAdmin: boolean;
  avatarUrl: string;
  createdAt: number;
}

export interface TwTeam {
  id: number;
  name: string;
}

export interface TwProject {
  id: number;
  name: string;
  description: string;
  status: 'active' | 'archived';
  companyId: number;
  ownerId: number | null;
  categoryId: number;
  startDate: string | null;
  endDate: string | null;
  tagIds: number[];
  createdAt: number;
  updatedAt: number;
  completedAt: number | null;
}

export interface TwTasklist {
  id: number;
  name: string;
  description: string;
  projectId: number;
  status: 'new' | 'completed';
  milestoneId: number;
  createdAt: number;
  updatedAt: number;
}

export interface TwTag {
  id: number;
  name: string;
  /** Six hex digits without '#', as webhooks send it. */
  color: string;
  projectId: number | null;
}

export interface TwTask {
  id: number;
  name: string;
  description: string | null;
  priority: TaskPriority | null;
  /** 0-100. */
  progress: number;
  startDate: string | null;
  dueDate: string | null;
  estimateMinutes: number;
  tasklistId: number;
  parentTaskId: number | null;
  assigneeUserIds: number[];
  /** Teams assigned (v3 lists them as assignees of type "teams"; webhooks and v1 carry users only). */
  assigneeTeamIds: number[];
  tagIds: number[];
  status: TaskStatus;
  isPrivate: boolean;
  displayOrder: number;
  createdBy: number;
  updatedBy: number;
  completedBy: number | null;
  deletedBy: number | null;
  createdAt: number;
  updatedAt: number;
  completedAt: number | null;
  deletedAt: number | null;
}

export interface TwWebhook {
  id: number;
  event: string;
  url: string;
  /** 1 (legacy form) or 2. */
  version: 1 | 2;
  contentType: 'application/json' | 'application/x-www-form-urlencoded';
  /** Signing token; '' for none. */
  token: string;
  /** 0 for a site-level hook. */
  projectId: number;
  status: 'active' | 'inactive';
  /** Deliveries given up after all retries; at 3 the hook is deactivated (reference 1.8). */
  discardedCount: number;
  createdAt: number;
}

/** Everything a Teamwork site holds. */
export interface TeamworkData {
  accountId: number;
  siteName: string;
  companies: TwCompany[];
  users: TwUser[];
  teams: TwTeam[];
  projects: TwProject[];
  tasklists: TwTasklist[];
  tags: TwTag[];
  tasks: TwTask[];
}

/** ISO-8601 UTC with whole seconds and `Z`: `2024-05-01T09:30:00Z`. */
export function isoSeconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Whole seconds, as Teamwork stores time. */
export function wholeSeconds(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}
