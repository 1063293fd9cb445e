// Node targets for the tests of src/runtimes/node: test/fixtures/node/target.mjs run by this very node,
// with Node flags and an optional wrapper (unshare -n...). Its heartbeat lines tell whether it runs on and
// how long it was paused; what the kernel says about its sockets is read here, independently of tripdump.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import type { Target } from '../helpers/processes.js';

export const TARGET_SCRIPT = path.resolve(import.meta.dirname, '..', 'fixtures', 'node', 'target.mjs');

export interface NodeTarget extends Target {
  /** Heartbeat times (the target's own clock, epoch ms) in order. */
  readonly beats: number[];
  /** Sends a command line to the target's stdin. */
  command(line: string): void;
  /** Resolves with the first output line (from index `from` on) that starts with `prefix`. */
  line(prefix: string, timeoutMs?: number, from?: number): Promise<string>;
  /** Resolves once `count` more heartbeats have arrived. */
  beatsAfter(count: number, timeoutMs?: number): Promise<void>;
  /** The longest gap between consecutive heartbeats from index `from` on, ms. */
  maxGap(from?: number): number;
  /** What it wrote on stderr so far (Node's inspector messages). */
  readonly stderr: string;
}

export interface NodeTargetOptions {
  nodeArgs?: readonly string[];
  /** Run through this command, which must exec what follows (e.g. unshare -n sh -c '... exec "$0" "$@"'). */
  wrapper?: readonly string[];
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** How each target spawned here ended, by pid: a target that dies mid-test is reported with its reason. */
const endings = new Map<number, () => string>();

export async function spawnNodeTarget(options: NodeTargetOptions = {}): Promise<NodeTarget> {
  const command = [...(options.wrapper ?? []), process.execPath, ...(options.nodeArgs ?? []), TARGET_SCRIPT];
  const child = spawn(command[0]!, command.slice(1), {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '', ...options.env },
  });
  const lines: string[] = [];
  const beats: number[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  let partial = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    stderr += d;
  });
  child.stdin!.on('error', () => {});
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    partial += d;
    for (let nl = partial.indexOf('\n'); nl >= 0; nl = partial.indexOf('\n')) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      if (line.startsWith('hb ')) beats.push(Number(line.split(' ')[2]));
      else lines.push(line);
    }
    for (const w of waiters) w();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ending = () => `exit code ${child.exitCode}, signal ${child.signalCode}; stderr: ${stderr}`;
  if (child.pid !== undefined) endings.set(child.pid, ending);
  const until = <T>(get: () => T | undefined, timeoutMs: number, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const v = get();
        if (v !== undefined) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(v);
        } else if (!alive(child)) {
          waiters.delete(check);
          clearTimeout(timer);
          reject(new Error(`the node target exited while waiting for ${what}: ${ending()}`));
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; stderr: ${stderr}`));
      }, timeoutMs);
      waiters.add(check);
      child.once('exit', check);
      check();
    });
  const target: NodeTarget = {
    pid: child.pid ?? -1,
    child,
    lines,
    beats,
    value: () => undefined,
    get exited() {
      return !alive(child);
    },
    get stderr() {
      return stderr;
    },
    async kill() {
      if (alive(child) && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      await exited;
    },
    command(line) {
      child.stdin!.write(`${line}\n`);
    },
    line(prefix, timeoutMs = 10_000, from = 0) {
      return until(() => lines.slice(from).find((l) => l.startsWith(prefix)), timeoutMs, `'${prefix}'`);
    },
    beatsAfter(count, timeoutMs = 10_000) {
      const goal = beats.length + count;
      return until(() => (beats.length >= goal ? true : undefined), timeoutMs, `${count} heartbeats`).then(
        () => {},
      );
    },
    maxGap(from = 0) {
      let gap = 0;
      for (let i = Math.max(1, from); i < beats.length; i++) gap = Math.max(gap, beats[i]! - beats[i - 1]!);
      return gap;
    },
  };
  try {
    await target.line('ready', options.timeoutMs ?? 20_000);
  } catch (e) {
    await target.kill();
    throw e;
  }
  return target;
}

/**
 * Options for a target without a SIGUSR1 handler: --disable-sigusr1 where this Node has it (22.14+),
 * else the fixture's FIXTURE_NO_SIGUSR1 (same state: the signal's default action, which terminates).
 */
export function withoutSigusr1(): NodeTargetOptions {
  const r = spawnSync(process.execPath, ['--disable-sigusr1', '-e', '0'], { stdio: 'ignore' });
  return r.status === 0 ? { nodeArgs: ['--disable-sigusr1'] } : { env: { FIXTURE_NO_SIGUSR1: '1' } };
}

/** The target's listening TCP sockets, read from /proc here (not through tripdump): "addr:port" in hex. */
export function listeningSockets(pid: number): string[] {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch (e) {
    const ending = endings.get(pid);
    if (ending === undefined || (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    throw new Error(`node target ${pid} is gone: ${ending()}`);
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const out: string[] = [];
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '0A' && inodes.has(f[9]!)) out.push(f[1]!);
    }
  }
  return out;
}

/** The port of a listeningSockets() entry. */
export const portOf = (entry: string): number => Number.parseInt(entry.split(':')[1]!, 16);

/** Children of pid (from /proc/PID/task/TID/children). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.push(
        ...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
      );
    } catch {
      // thread gone
    }
  }
  return out;
}
