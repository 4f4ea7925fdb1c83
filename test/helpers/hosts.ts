/**
 * Hosts for scale-out tests: each one a Linux network namespace of its own (`ip netns`), joined to the
 * machine by a veth pair on a bridge that this helper creates, so that a process started "on" a host
 * has its own loopback, its own ports and its own address, and reaches the services only through the
 * bridge's address (`serviceAddress`), as a second machine would.
 *
 * Everything is made here and removed by `destroy()`: the namespaces (`cnxt<pid>x<tag>-<i>`, the
 * veths go with them), the bridge (`cnxb<pid>-<tag>`), on a /24 of 10.0.0.0/8 that no interface of the
 * machine uses. Only addresses of that /24 are ever used. Namespaces left behind by a test process that
 * died before its afterAll (their name carries its pid) are removed by the next `makeHosts`.
 *
 * Creating namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN). Where that fails, `makeHosts`
 * returns loopback "hosts" instead (every process on 127.0.0.1, services too) and `fallback` says why
 * in one line, for the test to print: the test still runs, on one network.
 */
import { execFile } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Host {
  /** host-1, host-2, ... */
  name: string;
  /** The address its processes listen on and are reached at. */
  address: string;
  /** The namespace, or null on loopback. */
  netns: string | null;
  /** The command line that runs `command args` on this host. */
  wrap(command: string, args: readonly string[]): { command: string; args: string[] };
}

export interface Hosts {
  mode: 'netns' | 'loopback';
  /** Why the hosts are on loopback (one line), or null. */
  fallback: string | null;
  /** Where services (Redis, PostgreSQL) listen for the hosts: the bridge's address, or 127.0.0.1. */
  serviceAddress: string;
  /** The addresses the hosts connect from, as a CIDR (for pg_hba.conf). */
  cidr: string;
  hosts: Host[];
  /** Removes the namespaces and the bridge. Safe to call more than once; kill their processes first. */
  destroy(): Promise<void>;
}

async function ip(...args: string[]): Promise<string> {
  const { stdout } = await run('ip', args, { timeout: 10_000 });
  return stdout;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes namespaces and bridges of this helper whose test process is gone. */
async function sweepLeftovers(): Promise<void> {
  for (const line of (await ip('netns', 'list')).split('\n')) {
    const ns = line.split(' ')[0] ?? '';
    const pid = /^cnxt(\d+)x/.exec(ns)?.[1];
    if (pid !== undefined && !alive(Number(pid))) await ip('netns', 'del', ns).catch(() => {});
  }
  for (const line of (await ip('-o', 'link', 'show', 'type', 'bridge')).split('\n')) {
    const bridge = /^\d+: (cnxb(\d+)-\w+)/.exec(line);
    if (bridge !== null && !alive(Number(bridge[2]))) await ip('link', 'del', bridge[1] as string).catch(() => {});
  }
}

/** A /24 in 10.0.0.0/8 that no address of the machine is in. */
async function freeSubnet(): Promise<string> {
  const used = await ip('-4', '-o', 'addr', 'show');
  for (let i = 0; i < 50; i++) {
    const prefix = `10.${randomInt(64, 250)}.${randomInt(1, 250)}`;
    if (!used.includes(` ${prefix}.`)) return prefix;
  }
  throw new Error('no free /24 in 10.0.0.0/8');
}

function loopback(count: number, why: string): Hosts {
  const wrap = (command: string, args: readonly string[]) => ({ command, args: [...args] });
  return {
    mode: 'loopback',
    fallback: `network namespaces unavailable (${why}): every host runs on 127.0.0.1`,
    serviceAddress: '127.0.0.1',
    cidr: '127.0.0.1/32',
    hosts: Array.from({ length: count }, (_, i) => ({ name: `host-${i + 1}`, address: '127.0.0.1', netns: null, wrap })),
    destroy: async () => {},
  };
}

/** Makes `count` hosts in network namespaces, or on loopback where namespaces cannot be made. */
export async function makeHosts(count: number): Promise<Hosts> {
  if (process.platform !== 'linux') return loopback(count, `not Linux but ${process.platform}`);
  const rand = randomInt(0, 36 ** 4).toString(36);
  const bridge = `cnxb${process.pid}-${rand}`.slice(0, 15);
  const made: string[] = [];
  let bridgeMade = false;
  const destroy = async (): Promise<void> => {
    for (const ns of made.splice(0)) await ip('netns', 'del', ns).catch(() => {});
    if (bridgeMade) {
      bridgeMade = false;
      await ip('link', 'del', bridge).catch(() => {});
    }
  };
  try {
    await sweepLeftovers();
    const subnet = await freeSubnet();
    await ip('link', 'add', bridge, 'type', 'bridge');
    bridgeMade = true;
    await ip('addr', 'add', `${subnet}.1/24`, 'dev', bridge);
    await ip('link', 'set', bridge, 'up');
    const hosts: Host[] = [];
    for (let i = 0; i < count; i++) {
      const ns = `cnxt${process.pid}x${rand}-${i + 1}`;
      const outside = `cnxv${rand}h${i + 1}`;
      const inside = 'eth0';
      const address = `${subnet}.${i + 2}`;
      await ip('netns', 'add', ns);
      made.push(ns);
      await ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside, 'netns', ns);
      await ip('link', 'set', outside, 'master', bridge, 'up');
      await ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', inside);
      await ip('-n', ns, 'link', 'set', inside, 'up');
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      hosts.push({ name: `host-${i + 1}`, address, netns: ns, wrap: (command, args) => ({ command: 'ip', args: ['netns', 'exec', ns, command, ...args] }) });
    }
    return { mode: 'netns', fallback: null, serviceAddress: `${subnet}.1`, cidr: `${subnet}.0/24`, hosts, destroy };
  } catch (err) {
    await destroy();
    const why = (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
    return loopback(count, why.split('\n')[0] ?? why);
  }
}
