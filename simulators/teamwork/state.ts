/**
 * The Teamwork site the simulator serves. Tasks live in a `VersionedStore`, so that with a consistency
 * delay the API keeps serving the previous version of a changed task (or 404 for a new one) while its
 * webhook is already out. Companies, users, teams, projects, tasklists and tags change rarely and only
 * through the programmatic helpers; they are not versioned. Webhook registrations are plain records.
 */
import { VersionedStore, type SimClock } from '../common.ts';
import type { TeamworkData, TwCompany, TwProject, TwTag, TwTask, TwTasklist, TwTeam, TwUser, TwWebhook } from './model.ts';

export class TeamworkState {
  readonly accountId: number;
  readonly siteName: string;
  readonly companies = new Map<number, TwCompany>();
  readonly users = new Map<number, TwUser>();
  readonly teams = new Map<number, TwTeam>();
  readonly projects = new Map<number, TwProject>();
  readonly tasklists = new Map<number, TwTasklist>();
  readonly tags = new Map<number, TwTag>();
  readonly tasks: VersionedStore<TwTask>;
  readonly webhooks = new Map<number, TwWebhook>();
  /** The user whose API key the simulator accepts: the default actor of programmatic changes. */
  readonly meId: number;
  private nextTaskId: number;
  private nextWebhookId = 90001;
  private nextTagId: number;

  constructor(data: TeamworkData, clock: SimClock) {
    this.accountId = data.accountId;
    this.siteName = data.siteName;
    for (const c of data.companies) this.companies.set(c.id, c);
    for (const u of data.users) this.users.set(u.id, u);
    for (const t of data.teams) this.teams.set(t.id, t);
    for (const p of data.projects) this.projects.set(p.id, p);
    for (const l of data.tasklists) this.tasklists.set(l.id, l);
    for (const t of data.tags) this.tags.set(t.id, t);
    this.tasks = new VersionedStore<TwTask>(clock);
    for (const t of data.tasks) this.tasks.put(String(t.id), t);
    this.meId = (data.users[0] as TwUser).id;
    this.nextTaskId = Math.max(1000000, ...data.tasks.map((t) => t.id)) + 1;
    this.nextTagId = Math.max(5000, ...data.tags.map((t) => t.id)) + 1;
  }

  allocateTaskId(): number {
    return this.nextTaskId++;
  }

  allocateWebhookId(): number {
    return this.nextWebhookId++;
  }

  allocateTagId(): number {
    return this.nextTagId++;
  }

  /** The project a tasklist belongs to. */
  projectOfTasklist(tasklistId: number): TwProject | undefined {
    const list = this.tasklists.get(tasklistId);
    return list ? this.projects.get(list.projectId) : undefined;
  }

  projectIdOf(task: TwTask): number {
    return this.tasklists.get(task.tasklistId)?.projectId ?? 0;
  }

  /** The task as the API shows it now (delayed consistency applies). */
  visibleTask(id: number): TwTask | undefined {
    return this.tasks.get(String(id));
  }

  /** The newest version of a task, shown or not. */
  latestTask(id: number): TwTask | undefined {
    return this.tasks.latest(String(id));
  }

  /** A snapshot of the whole site as plain data (newest versions). */
  snapshot(): TeamworkData {
    return {
      accountId: this.accountId,
      siteName: this.siteName,
      companies: [...this.companies.values()],
      users: [...this.users.values()],
      teams: [...this.teams.values()],
      projects: [...this.projects.values()],
      tasklists: [...this.tasklists.values()],
      tags: [...this.tags.values()],
      tasks: this.tasks.latestAll(),
    };
  }
}
