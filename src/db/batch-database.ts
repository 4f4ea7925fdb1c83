/**
 * The seed's record-at-a-time methods, each written as a batch through `apply`, so that every backend
 * has one write path (and one stale-write guard) to get right.
 */
import { noChanges, type Changes, type Email, type Task } from '../model.ts';
import type { WriteResult } from './database.ts';

export abstract class BatchDatabase {
  abstract apply(changes: Changes): Promise<WriteResult>;

  upsertTask(task: Task): Promise<WriteResult> {
    return this.apply({ ...noChanges(), tasks: [task] });
  }

  upsertTasks(tasks: readonly Task[]): Promise<WriteResult> {
    return this.apply({ ...noChanges(), tasks: [...tasks] });
  }

  upsertEmail(email: Email): Promise<WriteResult> {
    return this.apply({ ...noChanges(), emails: [email] });
  }

  upsertEmails(emails: readonly Email[]): Promise<WriteResult> {
    return this.apply({ ...noChanges(), emails: [...emails] });
  }

  markTaskDeleted(id: string, at: Date): Promise<WriteResult> {
    return this.apply({ ...noChanges(), deletedTasks: [{ id, at }] });
  }

  markEmailDeleted(id: string, at: Date): Promise<WriteResult> {
    return this.apply({ ...noChanges(), deletedEmails: [{ id, at }] });
  }
}
