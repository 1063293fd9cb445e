// Trigger benchmark: tripdump's monitor against Debian's ProcDump 1.2 on the same workloads, in one run:
//  1. latency from a threshold crossing (the workload says when it crossed) to "Core dump ... generated";
//  2. how long the target is paused by that dump (largest gap in a 1 ms heartbeat the target keeps);
//  3. CPU used by the monitor itself over 60 s of watching one idle process, at 1000 ms and 100 ms polling.
// Output only; docs/design.md §16's targets are judged in the verdict lines.
//
// Run: npm run bench:trigger   (BENCH_TRIGGER_IDLE_S=60 sets the idle window)

import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { killAll, track } from './children.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const OUT_DIR = path.join(ROOT, 'build', 'bench');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const HEARTBEAT = path.join(OUT_DIR, 'heartbeat');
const WORKLOAD = path.join(OUT_DIR, 'workload');
const IDLE_S = Number(process.env.BENCH_TRIGGER_IDLE_S ?? 60);
const SETTLE_S = 5;
// V8's memory reducer collects a fresh process's start-up garbage about 8 s in (two mark-compacts): a
// one-off, so the steady-state window starts after it, and the row including it is printed as well.
const STEADY_S = 15;

interface Proc {
  child: ChildProcess;
  /** performance.now() at which a line matching re was first printed. */
  when(re: RegExp, timeoutMs?: number): Promise<number>;
  exit: Promise<void>;
}

function run(cmd: string, args: string[], cwd?: string): Proc {
  const child = track(spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }));
  const seen: { re: RegExp; resolve: (t: number) => void }[] = [];
  const lines: { t: number; line: string }[] = [];
  let partial = '';
  const onData = (d: Buffer) => {
    const t = performance.now();
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      lines.push({ t, line });
      for (const s of seen) if (s.re.test(line)) s.resolve(t);
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exit = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    exit,
    when(re, timeoutMs = 60_000) {
      const hit = lines.find((l) => re.test(l.line));
      if (hit) return Promise.resolve(hit.t);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `${cmd}: no line matching ${re} in ${timeoutMs} ms:\n${lines.map((l) => l.line).join('\n')}`,
              ),
            ),
          timeoutMs,
        );
        seen.push({
          re,
          resolve: (t) => {
            clearTimeout(timer);
            resolve(t);
          },
        });
      });
    },
  };
}

async function stopProc(p: Proc, sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) process.kill(p.child.pid!, sig);
  await p.exit;
}

/** Nanoseconds on a CPU, all threads (schedstat is exact; utime/stime come in 10 ms ticks, too coarse here). */
function cpuNs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended between the listing and the read
    }
  }
  return ns;
}

const tools = {
  tripdump: {
    memory: (pid: number, mb: number, pollMs: number, dir: string) => [
      process.execPath,
      [CLI, '-m', String(mb), '-pf', String(pollMs), String(pid), dir],
    ],
    cpu: (pid: number, pollMs: number, dir: string) => [
      process.execPath,
      [CLI, '-c', '90', '-pf', String(pollMs), String(pid), dir],
    ],
  },
  procdump: {
    memory: (pid: number, mb: number, pollMs: number, dir: string) => [
      'procdump',
      ['-M', String(mb), '-I', String(pollMs), '-o', `${dir}/`, '-p', String(pid)],
    ],
    cpu: (pid: number, pollMs: number, dir: string) => [
      'procdump',
      ['-C', '90', '-I', String(pollMs), '-o', `${dir}/`, '-p', String(pid)],
    ],
  },
} as const satisfies Record<
  string,
  {
    memory: (...a: [number, number, number, string]) => [string, string[]];
    cpu: (...a: [number, number, string]) => [string, string[]];
  }
>;
type Tool = keyof typeof tools;

const DONE = /Core dump \d+ generated/;

async function latency(tool: Tool, pollMs: number, work: string): Promise<number> {
  const dir = mkdtempSync(path.join(work, `${tool}-lat-`));
  const target = run(WORKLOAD, ['--delay', '2500', '--alloc', '200']);
  await target.when(/^ready/);
  const [cmd, args] = tools[tool].memory(target.child.pid!, 100, pollMs, dir);
  const mon = run(cmd, args, dir);
  const crossed = await target.when(/^crossed/, 30_000);
  const done = await mon.when(DONE, 60_000);
  await stopProc(mon, 'SIGINT');
  await stopProc(target);
  rmSync(dir, { recursive: true, force: true });
  return done - crossed;
}

async function pause(tool: Tool, work: string): Promise<number> {
  const dir = mkdtempSync(path.join(work, `${tool}-pause-`));
  const beat = path.join(dir, 'beat');
  const fd = openSync(beat, 'w');
  writeSync(fd, Buffer.alloc(4096));
  closeSync(fd);
  const target = run(HEARTBEAT, ['512', beat]);
  await target.when(/^ready/);
  await new Promise((r) => setTimeout(r, 300));
  const reset = openSync(beat, 'r+');
  writeSync(reset, Buffer.alloc(8), 0, 8, 0);
  closeSync(reset);
  const [cmd, args] = tools[tool].memory(target.child.pid!, 100, 1000, dir);
  const mon = run(cmd, args, dir);
  await mon.when(DONE, 60_000);
  await new Promise((r) => setTimeout(r, 50));
  const gapMs = Number(readFileSync(beat).readBigUInt64LE(0)) / 1000;
  await stopProc(mon, 'SIGINT');
  await stopProc(target);
  rmSync(dir, { recursive: true, force: true });
  return gapMs;
}

async function main(): Promise<void> {
  mkdirSync(OUT_DIR, { recursive: true });
  execFileSync('cc', ['-O2', '-o', HEARTBEAT, path.join(ROOT, 'bench', 'heartbeat.c')]);
  execFileSync('cc', ['-O2', '-pthread', '-o', WORKLOAD, path.join(ROOT, 'test', 'fixtures', 'workload.c')]);
  const hasProcdump = spawnSync('sh', ['-c', 'command -v procdump'], { stdio: 'ignore' }).status === 0;
  const version = hasProcdump
    ? (spawnSync('procdump', ['-h'], { encoding: 'utf8' }).stdout.match(/ProcDump v[\d.]+/)?.[0] ??
      'ProcDump')
    : 'not installed';
  console.log('tripdump trigger benchmark');
  console.log(
    `machine: ${os.cpus()[0]?.model} x${os.cpus().length}; kernel ${os.release()}; node ${process.version}; peer: ${version}`,
  );
  const load = os.loadavg()[0]!;
  console.log(
    `host load average at start: ${load.toFixed(2)}${load > 0.5 ? ' (busy: timings are noisy)' : ''}\n`,
  );
  const list: Tool[] = hasProcdump ? ['tripdump', 'procdump'] : ['tripdump'];
  if (!hasProcdump) console.log('(procdump not installed: apt-get install procdump; its rows are skipped)\n');
  const work = mkdtempSync(path.join(os.tmpdir(), 'tripdump-bench-trigger-'));
  try {
    console.log('| measure | tripdump | procdump |');
    console.log('|---|---|---|');
    // ProcDump 1.2 refuses polling intervals below 1000 ms.
    const row = async (
      label: string,
      f: (t: Tool) => Promise<number>,
      unit: string,
      digits = 0,
      minPoll = 1000,
    ) => {
      const v: Record<string, string> = {};
      for (const t of list)
        v[t] =
          t === 'procdump' && minPoll < 1000
            ? 'n/a (min. 1000 ms)'
            : `${(await f(t)).toFixed(digits)} ${unit}`;
      console.log(`| ${label} | ${v.tripdump} | ${v.procdump ?? '-'} |`);
      return v;
    };
    const lat1000 = await row(
      'crossing → dump complete, polling 1000 ms (200 MiB target)',
      (t) => latency(t, 1000, work),
      'ms',
    );
    await row('crossing → dump complete, polling 100 ms', (t) => latency(t, 100, work), 'ms', 0, 100);
    await row('target pause during the dump (512 MiB target)', (t) => pause(t, work), 'ms', 1);

    // Every monitor watches the same idle process at once: 60 s for all of them.
    const idle = run(WORKLOAD, []);
    await idle.when(/^ready/);
    const monitors = list.flatMap((t) =>
      (t === 'procdump' ? [1000] : [1000, 100]).map((ms) => {
        const dir = mkdtempSync(path.join(work, `${t}-idle-${ms}-`));
        const [cmd, args] = tools[t].cpu(idle.child.pid!, ms, dir);
        return { t, ms, p: run(cmd, args, dir) };
      }),
    );
    const mark = () => ({ t: performance.now(), ns: monitors.map((m) => cpuNs(m.p.child.pid!)) });
    const wait = (s: number) => new Promise((r) => setTimeout(r, s * 1000));
    await wait(SETTLE_S); // start-up (module loading) is not monitoring
    const a = mark();
    await wait(STEADY_S - SETTLE_S);
    const b = mark();
    await wait(IDLE_S);
    const c = mark();
    const share = (from: typeof a, to: typeof a) =>
      monitors.map((_, i) => ((to.ns[i]! - from.ns[i]!) / 1e9 / ((to.t - from.t) / 1000)) * 100);
    const pct = share(b, c);
    const withGc = share(a, c);
    for (const ms of [1000, 100]) {
      const cell = (t: Tool, of: number[]) => {
        const i = monitors.findIndex((m) => m.t === t && m.ms === ms);
        return i < 0 ? '-' : `${of[i]!.toFixed(3)} % of a core`;
      };
      console.log(
        `| monitor CPU over ${IDLE_S} s, one idle target, polling ${ms} ms | ${cell('tripdump', pct)} | ${cell('procdump', pct)} |`,
      );
      console.log(
        `| the same from ${SETTLE_S} s, with V8's one-off start-up GC | ${cell('tripdump', withGc)} | ${cell('procdump', withGc)} |`,
      );
    }
    for (const m of monitors) await stopProc(m.p, 'SIGINT');
    await stopProc(idle);
    console.log(
      `\n(CPU: every thread's run time from /proc/PID/task/*/schedstat, from ${STEADY_S} s after start for ${IDLE_S} s; the second row of each pair from ${SETTLE_S} s)`,
    );
    console.log('\nTargets (docs/design.md §16):');
    const lat = Number.parseFloat(lat1000.tripdump!);
    console.log(
      `  latency at 1000 ms polling ${lat.toFixed(0)} ms (target ≤ 1010 ms + dump time): ${lat <= 1010 + 300 ? 'met' : 'NOT met'}`,
    );
    const i1000 = monitors.findIndex((m) => m.t === 'tripdump' && m.ms === 1000);
    const p1000 = monitors.findIndex((m) => m.t === 'procdump' && m.ms === 1000);
    if (p1000 >= 0)
      console.log(
        `  monitor CPU at 1000 ms: tripdump ${pct[i1000]!.toFixed(3)} % vs procdump ${pct[p1000]!.toFixed(3)} %: ${pct[i1000]! <= Math.max(pct[p1000]!, 0.03) ? 'met' : 'NOT met'}`,
      );
  } finally {
    killAll();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  killAll();
  console.error(e);
  process.exit(1);
});
