// Real processes for tests: start the compiled fixture targets, wait until they say they are set up,
// read /proc about them independently of tripdump, and end every one of them by pid.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { afterEach } from 'vitest';

const root = path.resolve(import.meta.dirname, '..', '..');

/** Absolute path of a target compiled by test/global-setup.ts from test/fixtures/<name>.c. */
export function fixture(name: string): string {
  const file = path.join(root, 'build', 'fixtures', name);
  if (!existsSync(file))
    throw new Error(
      `fixture ${name} is not built: expected ${file} (test/global-setup.ts compiles test/fixtures/*.c)`,
    );
  return file;
}

export interface SpawnTargetOptions {
  /** How long to wait for "ready" (default 10 s). */
  timeoutMs?: number;
  /** Run the target through this command, e.g. ['setpriv', '--reuid=65534', ...]: it must exec it. */
  wrapper?: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** Keep the target's stdin open as a pipe (child.stdin) instead of /dev/null. */
  stdin?: boolean;
}

export interface Target {
  pid: number;
  child: ChildProcess;
  /** Every stdout line, the ones printed before "ready" included; it keeps growing. */
  lines: string[];
  /** The number from the first "key N" line (e.g. value('zombie')), or undefined. */
  value(key: string): number | undefined;
  /** True once the target has exited and been reaped. */
  readonly exited: boolean;
  /** SIGKILLs the target (and the "child PID" it reported) by pid and waits for it to be reaped. */
  kill(): Promise<void>;
}

/** The child is still ours (not yet reaped by Node), so its pid cannot have been reused. */
function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function waitExit(child: ChildProcess): Promise<void> {
  if (!alive(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function killChild(child: ChildProcess): Promise<void> {
  if (alive(child) && child.pid !== undefined) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  }
  await waitExit(child);
}

/**
 * Starts a fixture target and resolves once it printed "ready". Fails with the target's stderr when it
 * exits first or does not get ready in time (after killing it).
 */
export async function spawnTarget(
  name: string,
  args: readonly string[] = [],
  opts: SpawnTargetOptions = {},
): Promise<Target> {
  const file = fixture(name);
  const [command, ...prefix] = opts.wrapper ? [...opts.wrapper, file] : [file];
  const child = spawn(command!, [...prefix, ...args], {
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    env: opts.env,
  });
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    stderr += d;
  });
  child.stdout!.setEncoding('utf8');

  const target: Target = {
    pid: child.pid ?? -1,
    child,
    lines,
    value(key: string) {
      for (const line of lines) {
        const [k, v] = line.split(' ');
        if (k === key && v !== undefined) return Number(v);
      }
      return undefined;
    },
    get exited() {
      return !alive(child);
    },
    async kill() {
      // The forked child first, while its parent (the target) is alive and never reaps it: its pid is
      // pinned until then, so killing it by pid cannot hit an unrelated process.
      const forked = target.value('child');
      if (forked !== undefined && alive(child)) {
        try {
          process.kill(forked, 'SIGKILL');
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
        }
      }
      await killChild(child);
    },
  };

  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void killChild(child).then(() =>
        reject(new Error(`${name} ${args.join(' ')}: ${why}\nstderr: ${stderr.trim() || '(empty)'}`)),
      );
    };
    const timer = setTimeout(
      () => fail(`not ready after ${opts.timeoutMs ?? 10_000} ms`),
      opts.timeoutMs ?? 10_000,
    );
    child.once('error', (e) => fail(`cannot start: ${e.message}`));
    child.once('exit', (code, signal) => fail(`exited before ready (code ${code}, signal ${signal})`));
    child.stdout!.on('data', (d: string) => {
      partial += d;
      let nl = partial.indexOf('\n');
      while (nl >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        lines.push(line);
        if (line === 'ready' && !settled) {
          settled = true;
          clearTimeout(timer);
          resolve(target);
        }
        nl = partial.indexOf('\n');
      }
    });
  });
}

type Killable = Target | ChildProcess;
const isTarget = (p: Killable): p is Target => 'lines' in p;

/**
 * Registers an afterEach that ends, by pid, everything passed to the returned track() during the test.
 * Call it once at the top of a test file.
 */
export function trackProcesses(): <T extends Killable>(p: T) => T {
  const tracked: Killable[] = [];
  afterEach(async () => {
    const all = tracked.splice(0);
    await Promise.all(all.map((p) => (isTarget(p) ? p.kill() : killChild(p))));
  });
  return <T extends Killable>(p: T): T => {
    tracked.push(p);
    return p;
  };
}

/** Polls until predicate returns a truthy value (which is returned), or fails after timeoutMs. */
export async function waitFor<T>(
  predicate: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs = 5_000,
  what = 'condition',
  intervalMs = 10,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await predicate();
    if (v) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The raw text of /proc/PID/FILE, read directly: the truth the tests compare the sampler with. */
export function readProc(pid: number | 'self', file: string): string {
  return readFileSync(`/proc/${pid}/${file}`, 'utf8');
}

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgrp: number;
  /** proc(5) fields from 3 (state) on, as text: fields[n - 3] is field n. */
  fields: string[];
}

/** /proc/PID/stat split the robust way: comm runs to the last ')'. */
export function procStat(pid: number): ProcStat {
  const text = readProc(pid, 'stat');
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const fields = text
    .slice(close + 2)
    .trimEnd()
    .split(' ');
  return {
    pid: Number(text.slice(0, open - 1)),
    comm: text.slice(open + 1, close),
    state: fields[0]!,
    ppid: Number(fields[1]),
    pgrp: Number(fields[2]),
    fields,
  };
}

/** /proc/PID/status as key → value text. */
export function procStatus(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readProc(pid, 'status').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) out[line.slice(0, colon)] = line.slice(colon + 1).trim();
  }
  return out;
}

/** A "N kB" line of /proc/PID/status, in bytes. */
export function statusBytes(pid: number, key: string): number {
  const v = procStatus(pid)[key];
  if (v === undefined) throw new Error(`/proc/${pid}/status has no ${key}`);
  return Number.parseInt(v, 10) * 1024;
}

/** Open fds of a process, counted in /proc/PID/fd. */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Socket fds of a process: links in /proc/PID/fd that read "socket:[inode]". */
export function socketCount(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:[')) n++;
    } catch {
      // closed between readdir and readlink: not an open socket
    }
  }
  return n;
}

/** Thread ids of a process. */
export function taskIds(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`)
    .map(Number)
    .sort((a, b) => a - b);
}
