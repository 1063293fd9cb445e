// `tripdump dump` killed at random moments — SIGKILL of the CLI, of its whole process group, a second
// Ctrl-C right after the first — with the moments packed around the injected clone (the snapshot child
// exists from the clone on) and spread over the rest of the dump. After each run, what the kernel says:
// no process left but the target (no child of any of its threads, zombie or not, and no other process
// running its executable), no dumper process left, the target untraced and running (it answers on stdin),
// and no temporary or partial file: whatever is in the folder is a complete core.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, uniqueFixture } from '../e2e/run-cli.js';
import {
  procStat,
  procStatus,
  spawnTarget,
  type Target,
  trackProcesses,
  waitFor,
} from '../helpers/processes.js';

const track = trackProcesses();
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-dump-kill-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * How tripdump is ended: SIGKILL to it, SIGKILL to its process group, SIGINT twice, or SIGKILL to its dumper
 * process alone (as the OOM killer would), tripdump living on.
 */
type How = 'kill' | 'group' | 'int-int' | 'dumper';
interface Scenario {
  mode: 'snapshot' | 'stop';
  how: How;
  runs: number;
  /** The kill lands this many ms (uniformly random) after the target is first seen traced. */
  delay: [number, number];
}

// 50 runs in all. The clone is injected within a few ms of the attach (the target is stopped, its
// registers read, the clone copies the page tables of 256 MiB): the first rows aim there.
const scenarios: Scenario[] = [
  { mode: 'snapshot', how: 'kill', runs: 14, delay: [0, 12] },
  { mode: 'snapshot', how: 'kill', runs: 6, delay: [12, 300] },
  { mode: 'snapshot', how: 'int-int', runs: 10, delay: [0, 10] },
  { mode: 'snapshot', how: 'group', runs: 5, delay: [0, 30] },
  { mode: 'snapshot', how: 'dumper', runs: 5, delay: [0, 30] },
  { mode: 'stop', how: 'kill', runs: 6, delay: [0, 200] },
  { mode: 'stop', how: 'int-int', runs: 4, delay: [0, 20] },
];

const describeHow: Record<How, string> = {
  kill: 'SIGKILL',
  group: 'SIGKILL to its process group',
  'int-int': 'SIGINT twice',
  dumper: 'SIGKILL to its dumper',
};

/** Spins (not a timer: a timer fires a millisecond late at best) until `ms` have passed. */
function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy: the delay is the experiment's variable, at sub-millisecond resolution
  }
}

const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

function read<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined; // the process is gone
  }
}

/** Children of every thread of `pid`, zombies included (the snapshot child is its cloning thread's). */
function childrenOf(pid: number): number[] {
  const tasks = read(() => readdirSync(`/proc/${pid}/task`)) ?? [];
  return tasks.flatMap(
    (tid) =>
      read(() =>
        readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
      ) ?? [],
  );
}

/** Every process but `except` running `exe` (a copy of the target reparented elsewhere included). */
function running(exe: string, except: number): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e) && Number(e) !== except)
    .filter((e) => read(() => readlinkSync(`/proc/${e}/exe`)) === exe)
    .map(Number);
}

/** The process behind a tracer thread id, with its start time (so a reused pid is not taken for it). */
function processOf(tid: number): { pid: number; start: string } | undefined {
  return read(() => {
    const pid = Number(procStatus(tid).Tgid);
    return { pid, start: procStat(pid).fields[19]! };
  });
}

function stillThere(p: { pid: number; start: string }): boolean {
  const s = read(() => procStat(p.pid));
  return s !== undefined && s.fields[19] === p.start && s.state !== 'Z';
}

/** A complete ELF core: header, and every segment within the file's size. */
function completeCore(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const h = Buffer.alloc(64);
    if (readSync(fd, h, 0, 64, 0) !== 64 || h.readUInt32BE(0) !== 0x7f454c46 || h.readUInt16LE(16) !== 4)
      return false;
    const phoff = Number(h.readBigUInt64LE(32));
    const phnum = h.readUInt16LE(56);
    const ph = Buffer.alloc(56 * phnum);
    if (readSync(fd, ph, 0, ph.length, phoff) !== ph.length) return false;
    const size = statSync(file).size;
    for (let i = 0; i < phnum; i++) {
      const offset = Number(ph.readBigUInt64LE(i * 56 + 8));
      const filesz = Number(ph.readBigUInt64LE(i * 56 + 32));
      if (offset + filesz > size) return false;
    }
    return true;
  } finally {
    closeSync(fd);
  }
}

async function pongs(t: Target): Promise<boolean> {
  const before = t.lines.length;
  t.child.stdin!.write('x');
  return waitFor(() => t.lines.slice(before).some((l) => l.startsWith('pong x')), 10_000, 'pong').then(
    () => !t.lines.some((l) => l.startsWith('error')),
    () => false,
  );
}

/**
 * One run: tripdump is started on the target, ended as `s` says once the target is traced, and what is left
 * afterwards is described (nothing, when all is well); undefined when the dump ended before it was seen.
 */
async function oneRun(s: Scenario, t: Target, exe: string, out: string): Promise<string[] | undefined> {
  const run = track(
    spawn(process.execPath, [cli, 'dump', String(t.pid), `${out}/`, '--mode', s.mode], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: s.how === 'group', // a process group of its own, so the group kill hits tripdump only
    }),
  );
  let stderr = '';
  run.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((r) => run.once('exit', () => r()));
  const closed = new Promise<void>((r) => run.once('close', () => r()));
  // The tracer is the dumper's dump thread: note its process now, to wait for it to end later. It traces
  // the target while it is stopped, and the snapshot child for the rest of a snapshot-mode dump.
  // Polled between event-loop turns, not on a timer: the clone follows the attach within milliseconds.
  const tracerOf = (pid: number) => Number(read(() => procStatus(pid).TracerPid) ?? 0);
  const seen = () => [t.pid, ...childrenOf(t.pid)].map(tracerOf).find((x) => x > 0) ?? 0;
  const deadline = Date.now() + 30_000;
  let tracer = seen();
  for (; !tracer; tracer = seen()) {
    if (!alive(run)) {
      // A busy host kept this process off the CPU for the whole dump: no moment to kill it in.
      await closed;
      if (run.exitCode !== 0) throw new Error(`tripdump failed before it was seen tracing: ${stderr}`);
      for (const f of readdirSync(out)) rmSync(path.join(out, f));
      return undefined;
    }
    if (Date.now() > deadline) throw new Error('timed out after 30000 ms waiting for the dump to attach');
    await new Promise((r) => setImmediate(r));
  }
  const dumper = processOf(tracer);
  const delay = s.delay[0] + Math.random() * (s.delay[1] - s.delay[0]);
  // Up to 15 ms: spun (tripdump's pid stays ours meanwhile: Node reaps children only between ticks).
  if (delay > 15) await new Promise((r) => setTimeout(r, delay - 15));
  spin(Math.min(delay, 15));
  const what = `${s.mode} mode, ${describeHow[s.how]} ${delay.toFixed(1)} ms after the attach`;
  if (alive(run)) {
    if (s.how === 'kill') process.kill(run.pid!, 'SIGKILL');
    else if (s.how === 'group') process.kill(-run.pid!, 'SIGKILL');
    else if (s.how === 'dumper') {
      if (dumper && stillThere(dumper)) process.kill(dumper.pid, 'SIGKILL');
    } else {
      process.kill(run.pid!, 'SIGINT');
      spin(Math.random() * 10);
      process.kill(run.pid!, 'SIGINT');
    }
  }
  await exited;
  const left: string[] = [];
  // The dumper may outlive tripdump while it lets go of the target: wait for it to end.
  if (dumper)
    await waitFor(() => !stillThere(dumper), 20_000, `dumper ${dumper.pid} to end`).catch(() =>
      left.push(`dumper ${dumper.pid} still running`),
    );
  await waitFor(
    () => {
      const st = read(() => procStatus(t.pid));
      return st && st.TracerPid === '0' && !/^[tT]/.test(st.State ?? '');
    },
    5_000,
    'the target to run untraced',
  ).catch(() => {
    const st = read(() => procStatus(t.pid));
    left.push(`target ${st ? `state ${st.State}, TracerPid ${st.TracerPid}` : 'gone'}`);
  });
  for (const c of childrenOf(t.pid))
    left.push(`child ${c} of the target (state ${read(() => procStat(c).state) ?? '?'})`);
  for (const p of running(exe, t.pid))
    if (!childrenOf(t.pid).includes(p)) left.push(`process ${p} running the target's executable`);
  for (const f of readdirSync(out)) {
    const file = path.join(out, f);
    if (f.startsWith('.tripdump-') || !completeCore(file))
      left.push(`file ${f} (${statSync(file).size} bytes)`);
    rmSync(file, { force: true });
  }
  if (left.length === 0 && !(await pongs(t))) left.push('the target does not answer on stdin');
  return left.map((l) => `${what}: ${l}`);
}

describe('tripdump killed at random moments of a dump (50 runs in all)', () => {
  it.each(
    scenarios.map((s) => ({
      ...s,
      name: `${s.mode} mode, ${describeHow[s.how]} ${s.delay.join('-')} ms after the attach`,
    })),
  )(
    '$name, $runs runs: no process but the target, no zombie, the target untraced and running, no partial file',
    async (s) => {
      const copy = uniqueFixture('dump_target');
      const start = () =>
        spawnTarget('dump_target', ['--touch', '256'], {
          stdin: true,
          timeoutMs: 60_000,
          wrapper: ['/bin/sh', '-c', `shift; exec '${copy.file}' "$@"`, 'sh'],
        }).then(track);
      let t = await start();
      const out = mkdtempSync(path.join(dir, 'run-'));
      const failures: string[] = [];
      let missed = 0;
      let failedRuns = 0;
      for (let i = 0; i < s.runs; i++) {
        const left = await oneRun(s, t, copy.file, out);
        if (!left) {
          expect(++missed, 'dumps that ended before they were seen tracing').toBeLessThan(s.runs);
          i--;
          continue;
        }
        if (left.length === 0) continue;
        failedRuns++;
        failures.push(...left);
        // Start over with a fresh target: what was left (a copy still running, a zombie) is ended with it.
        for (const c of [...childrenOf(t.pid), ...running(copy.file, t.pid)])
          read(() => process.kill(c, 'SIGKILL'));
        await t.kill();
        t = await start();
      }
      console.log(`${s.name}: ${failedRuns} of ${s.runs} runs left something behind`);
      expect(failures).toEqual([]);
    },
    120_000,
  );
});
