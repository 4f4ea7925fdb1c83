/**
 * A seeded Teamwork site: companies, users (unicode names), teams, projects (one archived), tasklists
 * (some completed), tags, and tasks with subtasks, assignees, tags, priorities, dates, long and unicode
 * descriptions, and every status (new, reopened, completed, deleted). Same seed and anchor -> same data.
 */
import type {
  TaskPriority,
  TaskStatus,
  TeamworkData,
  TwCompany,
  TwProject,
  TwTag,
  TwTask,
  TwTasklist,
  TwTeam,
  TwUser,
} from '../teamwork/model.ts';
import { wholeSeconds } from '../teamwork/model.ts';
import { createRandom, type Random } from './random.ts';
import { PEOPLE, description, title, words } from './text.ts';

export interface TeamworkGeneratorOptions {
  /** Default 1. */
  seed?: number | string;
  /** Time (ms) the newest generated change is at or before; default now. Part of the reproducibility key. */
  anchor?: number;
  /** Default 8. */
  users?: number;
  /** Default 4 (the last one archived). */
  projects?: number;
  /** Per project; default 3 (the last one of each project completed). */
  tasklistsPerProject?: number;
  /** Default 150 (about a fifth of them subtasks). */
  tasks?: number;
  /** How far back (ms) created/updated times spread; default 30 days. */
  spanMs?: number;
}

const DAY = 24 * 60 * 60 * 1000;
const TAG_NAMES = ['urgent', 'bug', 'feature', 'Kundenwunsch', 'à revoir', '重要', 'blocked', 'design', 'q3', 'needs-info'];
const TAG_COLORS = ['2f8de4', 'e74c3c', '27ae60', 'f39c12', '8e44ad', '16a085', 'd35400', '7f8c8d', 'c0392b', '2c3e50'];

function dateOnly(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export function generateTeamworkData(options: TeamworkGeneratorOptions = {}): TeamworkData {
  const seed = options.seed ?? 1;
  const anchor = wholeSeconds(options.anchor ?? Date.now());
  const span = options.spanMs ?? 30 * DAY;
  const random = createRandom(`teamwork/${seed}`);
  const past = (r: Random, maxAgo = span): number => wholeSeconds(anchor - r.int(0, maxAgo));

  const companies: TwCompany[] = [
    { id: 2001, name: 'Example GmbH' },
    { id: 2002, name: 'Client & Co. «Ltd»' },
  ];

  const users: TwUser[] = [];
  const userCount = options.users ?? 8;
  for (let i = 0; i < userCount; i++) {
    const person = PEOPLE[i % PEOPLE.length] as { first: string; last: string };
    const id = 100001 + i;
    users.push({
      id,
      firstName: person.first,
      lastName: person.last,
      email: `user${id}@example.com`,
      title: i === 0 ? 'Owner' : random.pick(['Developer', 'Designer', 'PM', 'Support', '']),
      companyId: i % 4 === 3 ? 2002 : 2001,
      isAdmin: i === 0,
      avatarUrl: `https://s3.amazonaws.com/tw-avatars/${id}.png`,
      createdAt: wholeSeconds(anchor - 400 * DAY + i * DAY),
    });
  }
  const teams: TwTeam[] = [
    { id: 600001, name: 'Backend' },
    { id: 600002, name: 'Équipe design' },
  ];

  const projects: TwProject[] = [];
  const tasklists: TwTasklist[] = [];
  const tags: TwTag[] = TAG_NAMES.map((name, i) => ({
    id: 5001 + i,
    name,
    color: TAG_COLORS[i % TAG_COLORS.length] as string,
    projectId: null,
  }));
  const projectCount = options.projects ?? 4;
  const perProject = options.tasklistsPerProject ?? 3;
  for (let p = 0; p < projectCount; p++) {
    const id = 300001 + p;
    const createdAt = wholeSeconds(anchor - 200 * DAY + p * DAY);
    projects.push({
      id,
      name: p === 0 ? 'Website relaunch' : p === 1 ? 'Büro-Umzug 2025' : p === 2 ? '客户支持' : `Archive ${p}`,
      description: words(random, 8),
      status: p === projectCount - 1 && projectCount > 1 ? 'archived' : 'active',
      companyId: p % 2 === 0 ? 2001 : 2002,
      ownerId: random.chance(0.8) ? (random.pick(users) as TwUser).id : null,
      categoryId: random.chance(0.5) ? 7001 : 0,
      startDate: dateOnly(createdAt),
      endDate: random.chance(0.5) ? dateOnly(anchor + random.int(10, 200) * DAY) : null,
      tagIds: random.sample(tags, random.int(0, 2)).map((t) => t.id),
      createdAt,
      updatedAt: createdAt,
      completedAt: null,
    });
    for (let l = 0; l < perProject; l++) {
      const listCreated = wholeSeconds(createdAt + l * DAY);
      tasklists.push({
        id: 400001 + p * 100 + l,
        name: l === 0 ? 'Backlog' : l === perProject - 1 ? 'Done (archived list)' : `Sprint ${l} – ${words(random, 1)}`,
        description: random.chance(0.5) ? words(random, 5) : '',
        projectId: id,
        status: l === perProject - 1 && perProject > 1 ? 'completed' : 'new',
        milestoneId: random.chance(0.3) ? 800001 + l : 0,
        createdAt: listCreated,
        updatedAt: listCreated,
      });
    }
  }

  const tasks: TwTask[] = [];
  const taskCount = options.tasks ?? 150;
  for (let i = 0; i < taskCount; i++) {
    const r = random.fork(`task-${i}`);
    const id = 1000001 + i;
    const parent = i > 5 && r.chance(0.2) ? (r.pick(tasks.filter((t) => t.parentTaskId === null)) as TwTask) : null;
    const tasklist = parent ? (tasklists.find((l) => l.id === parent.tasklistId) as TwTasklist) : r.pick(tasklists);
    const createdAt = past(r);
    const updatedAt = wholeSeconds(createdAt + r.int(0, Math.min(5 * DAY, anchor - createdAt)));
    const roll = r.next();
    const status: TaskStatus = roll < 0.55 ? 'new' : roll < 0.65 ? 'reopened' : roll < 0.93 ? 'completed' : 'deleted';
    const creator = r.pick(users).id;
    const updater = r.pick(users).id;
    const assigneeUserIds = r.chance(0.25) ? [] : r.sample(users, r.int(1, 3)).map((u) => u.id).sort((a, b) => a - b);
    const start = r.chance(0.5) ? dateOnly(createdAt + r.int(0, 10) * DAY) : null;
    const due = r.chance(0.6) ? dateOnly(createdAt + r.int(5, 40) * DAY) : null;
    tasks.push({
      id,
      name: r.chance(0.05) ? `${title(r)} ${'long title '.repeat(20)}`.trim() : title(r),
      description: description(r),
      priority: r.chance(0.4) ? null : (r.pick(['low', 'medium', 'high']) as TaskPriority),
      progress: status === 'completed' ? 100 : r.pick([0, 0, 10, 25, 50, 90]),
      startDate: start,
      dueDate: due,
      estimateMinutes: r.pick([0, 0, 15, 30, 60, 90, 240, 480]),
      tasklistId: tasklist.id,
      parentTaskId: parent ? parent.id : null,
      assigneeUserIds,
      assigneeTeamIds: r.chance(0.05) ? [r.pick(teams).id] : [],
      tagIds: r.sample(tags, r.pick([0, 0, 1, 1, 2, 3])).map((t) => t.id).sort((a, b) => a - b),
      status,
      isPrivate: r.chance(0.05),
      displayOrder: i,
      createdBy: creator,
      updatedBy: updater,
      completedBy: status === 'completed' ? updater : null,
      deletedBy: status === 'deleted' ? updater : null,
      createdAt,
      updatedAt,
      completedAt: status === 'completed' ? updatedAt : null,
      deletedAt: status === 'deleted' ? updatedAt : null,
    });
  }

  return {
    accountId: 424242,
    siteName: 'simulated',
    companies,
    users,
    teams,
    projects,
    tasklists,
    tags,
    tasks,
  };
}
