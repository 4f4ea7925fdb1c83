/** Loads the Teamwork fixture payloads (test/sources/teamwork/fixtures/) and builds deliveries from them. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hmacSha256Hex } from '../../../src/sources/signature.ts';
import type { Delivery } from '../../../src/sources/source.ts';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');

/** The fixture file's bytes, exactly as stored. */
export function fixtureBytes(name: string): Buffer {
  return readFileSync(path.join(dir, name));
}

export function fixtureJson<T = Record<string, unknown>>(name: string): T {
  return JSON.parse(fixtureBytes(name).toString('utf8')) as T;
}

export const JSON_TYPE = 'application/json';
export const FORM_TYPE = 'application/x-www-form-urlencoded';

export interface DeliveryInit {
  body: Buffer | string;
  contentType?: string | null;
  event?: string;
  /** Signs the body with this token (lower-case hex), unless `signature` is given. */
  token?: string;
  signature?: string;
  receivedAt?: Date;
}

export function delivery(init: DeliveryInit): Delivery {
  const rawBody = typeof init.body === 'string' ? Buffer.from(init.body, 'utf8') : init.body;
  const headers: Record<string, string> = {};
  if (init.contentType !== null) headers['content-type'] = init.contentType ?? JSON_TYPE;
  if (init.event !== undefined) headers['x-projects-event'] = init.event;
  if (init.signature !== undefined) headers['x-projects-signature'] = init.signature;
  else if (init.token !== undefined) headers['x-projects-signature'] = hmacSha256Hex(init.token, rawBody);
  return { rawBody, headers, receivedAt: init.receivedAt ?? new Date('2026-11-06T12:00:00.000Z') };
}
