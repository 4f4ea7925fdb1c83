/**
 * deploy/docker-compose.yml cannot be run here (no Docker), so this checks what can be checked without
 * it: every connector service runs a real command of the CLI with settings the connector accepts (the
 * compose file's variables filled in), Redis keeps what it acknowledges, the proxy forwards to every
 * `serve`, and the layout is the documented one (two serve, two work, Redis, PostgreSQL, a proxy).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Service {
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }> | string[];
  image?: string;
  healthcheck?: unknown;
}

const compose = parse(readFileSync(path.join(ROOT, 'deploy/docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service> };
const services = compose.services;

/** Compose's `${NAME:-default}` and `${NAME:?message}`, with the .env an operator would write. */
function interpolate(value: string, env: Record<string, string>): string {
  return value.replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_m, name: string, kind?: string, rest?: string) => env[name] ?? (kind === '-' ? (rest ?? '') : ''));
}

describe('deploy/docker-compose.yml', () => {
  const connectors = Object.entries(services).filter(([, s]) => s.command?.[0] === 'node');

  it('has two serve and two work processes, Redis, PostgreSQL and a proxy', () => {
    const roles = connectors.map(([, s]) => s.command?.[2]).sort();
    expect(roles).toEqual(['serve', 'serve', 'work', 'work']);
    expect(services.redis?.image).toMatch(/^redis:/);
    expect(services.postgres?.image).toMatch(/^postgres:/);
    expect(services.proxy?.image).toMatch(/^caddy:/);
  });

  it('runs every connector service with a command of the CLI and settings the connector accepts', () => {
    const cli = readFileSync(path.join(ROOT, 'src/cli.ts'), 'utf8');
    const env = { POSTGRES_PASSWORD: 'pw', PUBLIC_URL: 'https://connector.example.com', TEAMWORK_SITE: 'acme', TEAMWORK_API_KEY: 'k', TEAMWORK_WEBHOOK_TOKEN: 't', MISSIVE_API_TOKEN: 'm', MISSIVE_WEBHOOK_SECRET: 's' };
    for (const [name, service] of connectors) {
      expect(service.command?.slice(0, 2), name).toEqual(['node', 'dist/cli.js']);
      expect(cli, `${name}: a command the CLI has`).toContain(`.command('${service.command?.[2]}')`);
      const settings = Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, interpolate(String(v), env)]));
      const config = parseConfig(settings);
      expect(config.unknownSettings, name).toEqual([]);
      expect(config.QUEUE_BACKEND, name).toBe('redis');
      expect(config.DB_BACKEND, name).toBe('postgres');
      expect(config.REDIS_DURABILITY, `${name} keeps the strict durability check`).toBe('strict');
      expect(Object.keys(service.depends_on ?? {}).sort(), name).toEqual(['postgres', 'redis']);
    }
  });

  it('runs Redis with AOF fsynced on every write and no eviction, and the proxy in front of every serve', () => {
    const command = services.redis?.command?.join(' ') ?? '';
    expect(command).toContain('--appendonly yes');
    expect(command).toContain('--appendfsync always');
    expect(command).toContain('--maxmemory-policy noeviction');
    const caddyfile = readFileSync(path.join(ROOT, 'deploy/caddy/Caddyfile'), 'utf8');
    const upstreams = /reverse_proxy ([^{]+)\{/.exec(caddyfile)?.[1]?.trim().split(/\s+/) ?? [];
    const serves = connectors.filter(([, s]) => s.command?.[2] === 'serve').map(([name]) => `${name}:8080`);
    expect(upstreams.sort()).toEqual(serves.sort());
  });
});
