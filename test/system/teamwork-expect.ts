/**
 * What a stored task must look like, computed from the Teamwork simulator's own record of the task
 * (not from the product's mapping), so that a system test checks the whole path against an independent
 * expectation.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Task } from '../../src/model.ts';
import type { TeamworkSimulator, TwTask } from '../../simulators/teamwork/index.ts';

/** The canonical fields of `task` as the simulator knows it now (raw, url and the people's details aside). */
export function expectedTask(sim: TeamworkSimulator, task: TwTask): Omit<Task, 'raw' | 'url' | 'createdBy' | 'updatedBy'> & { createdById: string; updatedById: string } {
  const data = sim.data();
  const list = data.tasklists.find((l) => l.id === task.tasklistId);
  if (list === undefined) throw new Error(`simulator has no tasklist ${task.tasklistId}`);
  const project = data.projects.find((p) => p.id === list.projectId);
  if (project === undefined) throw new Error(`simulator has no project ${list.projectId}`);
  const deleted = task.status === 'deleted';
  return {
    id: String(task.id),
    title: task.name,
    description: task.description,
    status: task.status,
    priority: task.priority,
    progress: task.progress,
    projectId: String(project.id),
    projectName: project.name,
    tasklistId: String(list.id),
    tasklistName: list.name,
    parentTaskId: task.parentTaskId === null ? null : String(task.parentTaskId),
    assignees: task.assigneeUserIds.map((id) => {
      const user = data.users.find((u) => u.id === id);
      return { id: String(id), name: user === undefined ? null : `${user.firstName} ${user.lastName}`, email: user?.email ?? null };
    }),
    tags: task.tagIds.map((id) => data.tags.find((t) => t.id === id)?.name ?? `?${id}`),
    startDate: task.startDate,
    dueDate: task.dueDate,
    estimateMinutes: task.estimateMinutes,
    createdAt: new Date(task.createdAt),
    updatedAt: new Date(task.updatedAt),
    completedAt: task.completedAt === null ? null : new Date(task.completedAt),
    deleted,
    deletedAt: deleted && task.deletedAt !== null ? new Date(task.deletedAt) : null,
    createdById: String(task.createdBy),
    updatedById: String(task.updatedBy),
  };
}

/** The stored task in the same shape as `expectedTask`, for one `toEqual`. */
export function comparableTask(row: Task): ReturnType<typeof expectedTask> {
  const { raw: _raw, url: _url, createdBy, updatedBy, ...rest } = row;
  return { ...rest, createdById: createdBy?.id ?? '', updatedById: updatedBy?.id ?? '' };
}

/** Whether the stored row equals the simulator's task (for polling). */
export function rowMatches(sim: TeamworkSimulator, row: Task | null, task: TwTask): boolean {
  if (row === null) return false;
  return isDeepStrictEqual(comparableTask(row), expectedTask(sim, task));
}
