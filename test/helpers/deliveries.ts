/**
 * Signed webhook deliveries for end-to-end tests, in the vendors' documented shapes (see
 * ../shared/reference/teamwork.md §1.4 and §1.7). Signatures are computed here with node:crypto, not
 * with the product's code, so a test checks the product against an independent computation.
 */
import { createHmac } from 'node:crypto';

export function teamworkTaskPayload(id: number, overrides: Record<string, unknown> = {}) {
  return {
    eventCreator: { id: 9, firstName: 'Ada', lastName: 'Lovelace', avatar: '' },
    task: {
      id,
      name: `Task ${id}`,
      description: 'Made by a test\n',
      priority: 'high',
      status: 'new',
      assignedUserIds: [9],
      parentId: 0,
      taskListId: 501,
      startDate: null,
      dueDate: null,
      progress: 0,
      estimatedMinutes: 30,
      tags: [{ id: 1, name: 'e2e', color: '2f8de4' }],
      projectId: 77,
      dateCreated: '2026-11-28T10:00:00Z',
      dateUpdated: '2026-11-28T10:05:00Z',
      hasCustomFields: false,
      ...overrides,
    },
    project: { id: 77, name: 'Operations', description: '', status: 'active', startDate: null, endDate: null, tags: [], ownerId: 9, companyId: 1, categoryId: 0, dateCreated: '2026-01-01T00:00:00Z' },
    taskList: { id: 501, name: 'Q4', description: '', status: 'new', milestoneId: 0, projectId: 77, templateId: null, tags: [] },
    users: [{ id: 9, firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com' }],
  };
}

export function signTeamwork(token: string, body: string): string {
  return createHmac('sha256', token).update(body).digest('hex');
}

export async function postTeamwork(url: string, body: string, headers: Record<string, string>): Promise<Response> {
  return fetch(`${url}/webhooks/teamwork`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
}

/** Posts a TASK.CREATED delivery of task `id`, signed with `token`; resolves with the HTTP status. */
export async function deliverSignedTask(url: string, token: string, id: number, overrides: Record<string, unknown> = {}): Promise<number> {
  const body = JSON.stringify(teamworkTaskPayload(id, overrides));
  const res = await postTeamwork(url, body, { 'x-projects-event': 'TASK.CREATED', 'x-projects-signature': signTeamwork(token, body) });
  await res.text();
  return res.status;
}
