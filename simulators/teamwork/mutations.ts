/**
 * Changes to Teamwork tasks, made the way Teamwork makes them: each writes a new task version (shown by
 * the API after the consistency delay, if any) and then sends exactly the webhook Teamwork sends for
 * that change. Each resolves with the new task once the first delivery attempts are done, so tests are
 * deterministic. A change that would not happen in Teamwork (completing a completed task) throws.
 */
import type { FaultControl, SimClock } from '../common.ts';
import type { Random } from '../generator/random.ts';
import { TASK_PRIORITIES, wholeSeconds, type TaskEvent, type TaskPriority, type TwTask } from './model.ts';
import type { TeamworkState } from './state.ts';
import type { TeamworkWebhooks } from './webhooks.ts';

/** Who made a change; default the API key's user. */
export interface Actor {
  actorId?: number;
}

export interface CreateTaskInput extends Actor {
  name: string;
  /** Default: the first open tasklist of the first active project. */
  tasklistId?: number;
  parentTaskId?: number | null;
  description?: string | null;
  priority?: TaskPriority | null;
  progress?: number;
  startDate?: string | null;
  dueDate?: string | null;
  estimateMinutes?: number;
  assigneeUserIds?: number[];
  assigneeTeamIds?: number[];
  tagIds?: number[];
}

export type UpdateTaskInput = Partial<
  Pick<TwTask, 'name' | 'description' | 'priority' | 'progress' | 'startDate' | 'dueDate' | 'estimateMinutes' | 'assigneeUserIds' | 'assigneeTeamIds' | 'isPrivate'>
> &
  Actor;

export class TeamworkMutations {
  constructor(
    private readonly state: TeamworkState,
    private readonly webhooks: TeamworkWebhooks,
    private readonly faults: FaultControl,
    private readonly clock: SimClock,
  ) {}

  async createTask(input: CreateTaskInput): Promise<TwTask> {
    const actorId = this.actor(input);
    const parent = input.parentTaskId ? this.existing(input.parentTaskId) : null;
    const tasklistId = input.tasklistId ?? parent?.tasklistId ?? this.defaultTasklistId();
    if (!this.state.tasklists.has(tasklistId)) throw new Error(`tasklist ${tasklistId} not found`);
    const now = wholeSeconds(this.clock.now());
    const task: TwTask = {
      id: this.state.allocateTaskId(),
      name: input.name,
      description: input.description ?? null,
      priority: input.priority ?? null,
      progress: input.progress ?? 0,
      startDate: input.startDate ?? null,
      dueDate: input.dueDate ?? null,
      estimateMinutes: input.estimateMinutes ?? 0,
      tasklistId,
      parentTaskId: parent?.id ?? null,
      assigneeUserIds: [...(input.assigneeUserIds ?? [])],
      assigneeTeamIds: [...(input.assigneeTeamIds ?? [])],
      tagIds: [...(input.tagIds ?? [])],
      status: 'new',
      isPrivate: false,
      displayOrder: this.state.tasks.size,
      createdBy: actorId,
      updatedBy: actorId,
      completedBy: null,
      deletedBy: null,
      createdAt: now,
      updatedAt: now,
      completedAt: null,
      deletedAt: null,
    };
    return this.commit('TASK.CREATED', task, actorId);
  }

  async updateTask(id: number, patch: UpdateTaskInput): Promise<TwTask> {
    const { actorId: _ignored, ...fields } = patch;
    const task = { ...this.existing(id), ...fields };
    return this.commit('TASK.UPDATED', this.touch(task, patch), this.actor(patch));
  }

  async completeTask(id: number, by: Actor = {}): Promise<TwTask> {
    const current = this.existing(id);
    if (current.status === 'completed') throw new Error(`task ${id} is already completed`);
    const actorId = this.actor(by);
    const task = this.touch({ ...current, status: 'completed', progress: 100, completedBy: actorId }, by);
    task.completedAt = task.updatedAt;
    return this.commit('TASK.COMPLETED', task, actorId);
  }

  async reopenTask(id: number, by: Actor = {}): Promise<TwTask> {
    const current = this.existing(id);
    if (current.status !== 'completed') throw new Error(`task ${id} is not completed`);
    const task = this.touch({ ...current, status: 'reopened', completedAt: null, completedBy: null }, by);
    return this.commit('TASK.REOPENED', task, this.actor(by));
  }

  async deleteTask(id: number, by: Actor = {}): Promise<TwTask> {
    const actorId = this.actor(by);
    const task = this.touch({ ...this.existing(id), status: 'deleted', deletedBy: actorId }, by);
    task.deletedAt = task.updatedAt;
    return this.commit('TASK.DELETED', task, actorId);
  }

  /** Moves a task to another tasklist (possibly of another project) and/or under another parent. */
  async moveTask(id: number, to: { tasklistId?: number; parentTaskId?: number | null } & Actor): Promise<TwTask> {
    const current = this.existing(id);
    const tasklistId = to.tasklistId ?? current.tasklistId;
    if (!this.state.tasklists.has(tasklistId)) throw new Error(`tasklist ${tasklistId} not found`);
    const parentTaskId = to.parentTaskId === undefined ? current.parentTaskId : to.parentTaskId;
    if (parentTaskId !== null) this.existing(parentTaskId);
    const task = this.touch({ ...current, tasklistId, parentTaskId }, to);
    return this.commit('TASK.MOVED', task, this.actor(to));
  }

  async tagTask(id: number, tagIds: number[], by: Actor = {}): Promise<TwTask> {
    const current = this.existing(id);
    for (const tagId of tagIds) if (!this.state.tags.has(tagId)) throw new Error(`tag ${tagId} not found`);
    const merged = [...new Set([...current.tagIds, ...tagIds])].sort((a, b) => a - b);
    return this.commit('TASK.TAGGED', this.touch({ ...current, tagIds: merged }, by), this.actor(by));
  }

  async untagTask(id: number, tagIds: number[], by: Actor = {}): Promise<TwTask> {
    const current = this.existing(id);
    const kept = current.tagIds.filter((t) => !tagIds.includes(t));
    return this.commit('TASK.UNTAGGED', this.touch({ ...current, tagIds: kept }, by), this.actor(by));
  }

  /** Marks a tasklist completed (its tasks then need `showCompletedLists=true`). No webhook is simulated. */
  completeTasklist(id: number): void {
    const list = this.state.tasklists.get(id);
    if (!list) throw new Error(`tasklist ${id} not found`);
    this.state.tasklists.set(id, { ...list, status: 'completed', updatedAt: wholeSeconds(this.clock.now()) });
  }

  /** Archives or un-archives a project (its tasks then need `includeArchivedProjects=true`). No webhook is simulated. */
  setProjectArchived(id: number, archived: boolean): void {
    const project = this.state.projects.get(id);
    if (!project) throw new Error(`project ${id} not found`);
    this.state.projects.set(id, { ...project, status: archived ? 'archived' : 'active', updatedAt: wholeSeconds(this.clock.now()) });
  }

  /** One random change, as a busy team would make (the activity loop). */
  async randomChange(random: Random): Promise<TwTask> {
    const live = this.state.tasks.latestAll().filter((t) => t.status !== 'deleted');
    const actorId = random.pick([...this.state.users.keys()]);
    const roll = random.next();
    if (live.length === 0 || roll < 0.2) {
      const lists = [...this.state.tasklists.values()].filter((l) => l.status !== 'completed');
      return this.createTask({
        name: `Task ${random.hex(4)} – ${random.pick(['Überprüfen', 'review', '检查', 'deploy 🚀'])}`,
        tasklistId: random.pick(lists.length > 0 ? lists : [...this.state.tasklists.values()]).id,
        description: random.chance(0.5) ? `Created by activity\n` : null,
        priority: random.chance(0.5) ? random.pick(TASK_PRIORITIES) : null,
        assigneeUserIds: random.sample([...this.state.users.keys()], random.int(0, 2)),
        actorId,
      });
    }
    const task = random.pick(live);
    if (roll < 0.5) return this.updateTask(task.id, { name: `${task.name.split(' ·')[0]} · v${random.int(2, 99)}`, progress: random.pick([0, 20, 50, 80]), actorId });
    if (roll < 0.62) return task.status === 'completed' ? this.reopenTask(task.id, { actorId }) : this.completeTask(task.id, { actorId });
    if (roll < 0.72) {
      const lists = [...this.state.tasklists.values()].filter((l) => l.id !== task.tasklistId);
      return this.moveTask(task.id, { tasklistId: random.pick(lists).id, parentTaskId: null, actorId });
    }
    if (roll < 0.82) return this.tagTask(task.id, [random.pick([...this.state.tags.keys()])], { actorId });
    if (roll < 0.9 && task.tagIds.length > 0) return this.untagTask(task.id, [random.pick(task.tagIds)], { actorId });
    if (roll < 0.95) return this.updateTask(task.id, { assigneeUserIds: random.sample([...this.state.users.keys()], random.int(0, 2)), actorId });
    return this.deleteTask(task.id, { actorId });
  }

  private async commit(event: TaskEvent, task: TwTask, actorId: number): Promise<TwTask> {
    this.state.tasks.put(String(task.id), task, this.faults.get().consistencyDelayMs);
    await this.webhooks.emit(event, task, actorId);
    return task;
  }

  private touch(task: TwTask, by: Actor): TwTask {
    return { ...task, updatedBy: this.actor(by), updatedAt: wholeSeconds(this.clock.now()) };
  }

  private actor(by: Actor): number {
    const id = by.actorId ?? this.state.meId;
    if (!this.state.users.has(id)) throw new Error(`user ${id} not found`);
    return id;
  }

  private existing(id: number): TwTask {
    const task = this.state.latestTask(id);
    if (!task) throw new Error(`task ${id} not found`);
    if (task.status === 'deleted') throw new Error(`task ${id} is deleted`);
    return task;
  }

  private defaultTasklistId(): number {
    for (const list of this.state.tasklists.values()) {
      const project = this.state.projects.get(list.projectId);
      if (list.status !== 'completed' && project?.status === 'active') return list.id;
    }
    throw new Error('no open tasklist in an active project');
  }
}
