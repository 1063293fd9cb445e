// .NET benchmark, side by side in one run against the same target (the test target holding BENCH_DOTNET_MB
// of managed arrays, default 300):
//  1. runtime dumps per type: tripdump (library call, and the CLI) against `dotnet-dump collect` (the same
//     runtime writes both: the ratio shows what tripdump adds), and the ptrace writer's core for size;
//  2. counter trigger latency, gauge set → dump complete: tripdump's -pc monitor against the triggerdump
//     approach (dotnet-counters at 1 s, then `dotnet-dump collect` when the value crosses);
//  3. the target's CPU with a session attached (counters at 1 s + GC and exception events) against none;
//  4. exception trigger latency (-e): the throw → tripdump sees it (the monitor fires) → the runtime's
//     dump writer holds the target (createdump ptrace-attaches: the state the dump shows) → the file
//     appears. The first two are the EventPipe path; the rest is the runtime's dump writer.
// Figures only; the design's targets (≤ 1.05× dotnet-dump's time, one interval + 100 ms, ≤ 1 % CPU) are
// printed next to them.
//
// Run: npm run bench:dotnet   (BENCH_DOTNET_ROUNDS=3, BENCH_DOTNET_MB=300,
//      BENCH_DOTNET_PARTS=dumps,latency,cpu,exception; the exception part alone: BENCH_DOTNET_PARTS=exception)
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, watch } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DumpAction, Monitor, writeCoreDump } from 'tripdump';
import {
  CounterTrigger,
  dotnetConnections,
  dotnetProcessInfo,
  ExceptionTrigger,
  GcMemoryTrigger,
  writeDotnetDump,
} from 'tripdump/dotnet';
import { killAll, track } from './children.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const TOOLS = path.join(ROOT, '.cache', 'dotnet-tools');
const ROUNDS = Number(process.env.BENCH_DOTNET_ROUNDS ?? 3);
const MB = Number(process.env.BENCH_DOTNET_MB ?? 300);
const TYPES = ['normal', 'withheap', 'triage', 'full'] as const;
/** Quiet time between the exception trigger's session start and the throw (BENCH_DOTNET_IDLE_MS). */
const IDLE_MS = Number(process.env.BENCH_DOTNET_IDLE_MS ?? 2500);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The test target: the test setup's build (.cache/dotnet-fixture/<source hash>), else built here. */
function targetBinary(): string {
  const link = path.join(ROOT, 'build', 'fixtures', 'tripdump-fixture');
  if (existsSync(link)) return link;
  const cache = path.join(ROOT, '.cache', 'dotnet-fixture');
  const built = existsSync(cache)
    ? readdirSync(cache).filter((d) => existsSync(path.join(cache, d, 'tripdump-fixture.dll')))
    : [];
  if (built.length)
    return path.join(
      cache,
      built.sort((a, b) => statSync(path.join(cache, b)).mtimeMs - statSync(path.join(cache, a)).mtimeMs)[0]!,
      'tripdump-fixture',
    );
  // Built from a copy: a build inside test/fixtures would leave obj/ there.
  const work = mkdtempSync(path.join(os.tmpdir(), 'tripdump-fixture-src-'));
  cpSync(path.join(ROOT, 'test', 'fixtures', 'dotnet'), work, {
    recursive: true,
    filter: (f) => !/\.ts$/.test(f),
  });
  const out = path.join(cache, 'bench');
  const r = spawnSync('dotnet', ['build', '-c', 'Release', '-o', out, work], { stdio: 'inherit' });
  rmSync(work, { recursive: true, force: true });
  if (r.status !== 0) throw new Error('dotnet build of the test target failed');
  return path.join(out, 'tripdump-fixture');
}

function tool(name: string): string {
  const local = path.join(TOOLS, name);
  if (!existsSync(local)) {
    const r = spawnSync('dotnet', ['tool', 'install', '--tool-path', TOOLS, name], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`dotnet tool install ${name} failed`);
  }
  return local;
}

interface Target {
  pid: number;
  child: ChildProcess;
  send(cmd: string, answer: string): Promise<void>;
}

async function startTarget(): Promise<Target> {
  const child = track(spawn(targetBinary(), [], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const lines: string[] = [];
  let partial = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  const waitLine = async (prefix: string, from: number) => {
    for (let i = 0; i < 3000; i++) {
      if (lines.slice(from).some((l) => l.startsWith(prefix))) return;
      await sleep(10);
    }
    throw new Error(`the target did not answer '${prefix}'`);
  };
  await waitLine('ready', 0);
  return {
    pid: child.pid!,
    child,
    async send(cmd, answer) {
      const from = lines.length;
      child.stdin!.write(`${cmd}\n`);
      await waitLine(answer, from);
    },
  };
}

function run(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] }));
  return new Promise((resolve, reject) =>
    child.on('close', (code) =>
      code === 0
        ? resolve(performance.now() - t0)
        : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}`)),
    ),
  );
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

async function dumps(t: Target, dir: string): Promise<void> {
  const dotnetDump = tool('dotnet-dump');
  console.log(
    `\n1. Runtime dumps of a target holding ${MB} MB (median of ${ROUNDS}; order rotated each round)`,
  );
  const rows: string[][] = [
    [
      'type',
      'tripdump API s',
      'tripdump CLI s',
      'dotnet-dump collect s',
      'API / collect',
      'CLI / collect',
      'size MiB',
      'collect size MiB',
    ],
  ];
  for (const type of TYPES) {
    const api: number[] = [];
    const cli: number[] = [];
    const col: number[] = [];
    let size = 0;
    let colSize = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const jobs: (() => Promise<void>)[] = [
        async () => {
          const f = path.join(dir, `api.${type}`);
          const t0 = performance.now();
          const res = await writeDotnetDump(t.pid, f, { type, overwrite: true });
          api.push((performance.now() - t0) / 1000);
          size = res.bytesWritten;
          rmSync(f);
        },
        async () => {
          const f = path.join(dir, `cli.${type}`);
          cli.push(
            (await run(process.execPath, [CLI, 'dump', String(t.pid), f, '--type', type, '--overwrite'])) /
              1000,
          );
          rmSync(f);
        },
        async () => {
          const f = path.join(dir, `collect.${type}`);
          const name = { normal: 'Mini', withheap: 'Heap', triage: 'Triage', full: 'Full' }[type];
          col.push((await run(dotnetDump, ['collect', '-p', String(t.pid), '--type', name, '-o', f])) / 1000);
          colSize = statSync(f).size;
          rmSync(f);
        },
      ];
      for (let k = 0; k < jobs.length; k++) await jobs[(k + r) % jobs.length]!();
    }
    rows.push([
      type,
      median(api).toFixed(2),
      median(cli).toFixed(2),
      median(col).toFixed(2),
      (median(api) / median(col)).toFixed(2),
      (median(cli) / median(col)).toFixed(2),
      (size / 2 ** 20).toFixed(1),
      (colSize / 2 ** 20).toFixed(1),
    ]);
  }
  print(rows);
  const core = await writeCoreDump(t.pid, path.join(dir, 'ptrace.core'), { overwrite: true });
  const full = await writeDotnetDump(t.pid, path.join(dir, 'full.dmp'), { type: 'full', overwrite: true });
  console.log(
    `ptrace writer core: ${(core.bytesWritten / 2 ** 20).toFixed(0)} MiB apparent, ${(core.bytesOnDisk / 2 ** 20).toFixed(0)} MiB on disk; ` +
      `runtime full dump: ${(full.bytesOnDisk / 2 ** 20).toFixed(0)} MiB on disk (${(full.bytesOnDisk / core.bytesOnDisk).toFixed(2)}× the core on disk, ` +
      `${(full.bytesOnDisk / core.bytesWritten).toFixed(2)}× its apparent size)`,
  );
  rmSync(path.join(dir, 'ptrace.core'));
  rmSync(path.join(dir, 'full.dmp'));
  console.log('target: each runtime dump ≤ 1.05× dotnet-dump collect (the runtime writes both)');
}

/** tripdump's -pc monitor: gauge 80 → firing, and → dump complete, ms. */
async function tripdumpLatency(t: Target, dir: string): Promise<[number, number]> {
  await t.send('gauge 0', 'gauge');
  const ctl = new AbortController();
  let done = 0;
  let fired = 0;
  const m = new Monitor({
    target: { pid: t.pid },
    triggers: [
      new CounterTrigger({ provider: 'Tripdump.Fixture', counter: 'fixture.gauge' }, 'above', 50, 1),
    ],
    actions: [new DumpAction({ dir, overwrite: true })],
    cooldownMs: 0,
    signal: ctl.signal,
  });
  m.on((e) => {
    if (e.type === 'fire') fired = performance.now();
    if (e.type === 'action') done = performance.now();
  });
  const running = m.run();
  await sleep(2500);
  const t0 = performance.now();
  await t.send('gauge 80', 'gauge');
  await running;
  return [fired - t0, done - t0];
}

/** The triggerdump approach: dotnet-counters at 1 s; on the crossing, dotnet-dump collect. */
async function countersLatency(t: Target, dir: string): Promise<[number, number]> {
  await t.send('gauge 0', 'gauge');
  const out = path.join(dir, 'counters.dmp');
  // `monitor` prints each refresh (redrawn in place); its stdout is a pipe, read as it comes.
  const counters = track(
    spawn(
      tool('dotnet-counters'),
      ['monitor', '-p', String(t.pid), '--counters', 'Tripdump.Fixture', '--refresh-interval', '1'],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    ),
  );
  let armed = false;
  let crossed: () => void = () => {};
  const crossing = new Promise<void>((r) => {
    crossed = r;
  });
  counters.stdout!.on('data', (d: Buffer) => {
    if (armed && /\b80\b/.test(d.toString())) crossed();
  });
  await sleep(2500);
  const t0 = performance.now();
  armed = true;
  await t.send('gauge 80', 'gauge');
  await crossing;
  const seen = performance.now() - t0;
  counters.kill('SIGKILL');
  await run(tool('dotnet-dump'), ['collect', '-p', String(t.pid), '--type', 'Full', '-o', out]);
  const ms = performance.now() - t0;
  rmSync(out, { force: true });
  return [seen, ms];
}

async function latency(t: Target, dir: string): Promise<void> {
  console.log(
    `\n2. Counter trigger latency: gauge set past the threshold → full dump complete (median of ${ROUNDS})`,
  );
  const ours: [number, number][] = [];
  const theirs: [number, number][] = [];
  for (let r = 0; r < ROUNDS; r++) {
    ours.push(await tripdumpLatency(t, dir));
    theirs.push(await countersLatency(t, dir));
  }
  for (const f of readdirSync(dir)) rmSync(path.join(dir, f), { force: true, recursive: true });
  const cells = (xs: number[]) => [
    median(xs).toFixed(0),
    `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}`,
  ];
  print([
    ['approach', 'crossing seen, median ms', 'range', 'dump complete, median ms', 'range'],
    ['tripdump -pc (1 s interval)', ...cells(ours.map((x) => x[0])), ...cells(ours.map((x) => x[1]))],
    [
      'dotnet-counters 1 s + dotnet-dump',
      ...cells(theirs.map((x) => x[0])),
      ...cells(theirs.map((x) => x[1])),
    ],
  ]);
  console.log(
    'target: crossing seen within one counter interval + 100 ms (the gauge is read once per interval)',
  );
}

async function overhead(t: Target): Promise<void> {
  const seconds = Number(process.env.BENCH_DOTNET_CPU_S ?? 30);
  console.log(
    `\n3. Target CPU, idle, ${seconds} s each: no session; the first ${seconds} s of a session (counters at 1 s, GC and exception events: ` +
      'the runtime JIT-compiles its collection code, tiered compilation recompiles it); the next ' +
      `${seconds} s (steady state)`,
  );
  const hz = 100;
  const measure = async () => {
    const a = cpuTicks(t.pid);
    await sleep(seconds * 1000);
    return ((cpuTicks(t.pid) - a) / hz / seconds) * 100;
  };
  const without = await measure();
  const ctl = new AbortController();
  const triggers = [
    new GcMemoryTrigger('total', [1e6]),
    new ExceptionTrigger(),
    new CounterTrigger({ provider: 'System.Runtime', counter: 'cpu-usage' }, 'above', 1000),
  ];
  const m = new Monitor({ target: { pid: t.pid }, triggers, actions: [], signal: ctl.signal });
  const monitoring = m.run();
  const warmup = await measure();
  const steady = await measure();
  ctl.abort();
  await monitoring;
  print([
    ['', '% of a core'],
    ['no session', without.toFixed(2)],
    ['session, first interval', warmup.toFixed(2)],
    ['session, steady state', steady.toFixed(2)],
    ['steady-state overhead', (steady - without).toFixed(2)],
  ]);
  console.log('target: ≤ 1 % of a core');
}

/** The TracerPid line of /proc/PID/status: who holds the target under ptrace (0: nobody). */
function tracer(pid: number): string {
  return /^TracerPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1] ?? '0';
}

/** One -e firing, ms from writing `throw` to the target: seen (fire), target held by the writer, file there. */
async function exceptionLatency(t: Target, dir: string): Promise<[number, number, number]> {
  const ctl = new AbortController();
  let fired = 0;
  let held = 0;
  let file = 0;
  const m = new Monitor({
    target: { pid: t.pid },
    triggers: [new ExceptionTrigger(['*Timeout*'])],
    actions: [new DumpAction({ dir, overwrite: true })],
    cooldownMs: 0,
    signal: ctl.signal,
  });
  let armed: () => void = () => {};
  const ready = new Promise<void>((r) => {
    armed = r;
  });
  m.on((e) => {
    // Versions before the 'armed' event: the session is up 3 s after the start at the latest.
    if ((e.type as string) === 'armed') armed();
    if (e.type === 'fire') fired = performance.now();
  });
  const watcher = watch(dir, () => {
    file ||= performance.now();
  });
  const running = m.run();
  await Promise.race([ready, sleep(3000)]);
  // The throw comes into a quiet session, as in a service (right after the session starts, the runtime's
  // streaming thread is still busy and hands events over sooner).
  await sleep(IDLE_MS);
  // A 1 ms poll of TracerPid from the throw on: when createdump attaches, the dump's moment is fixed.
  let polling = true;
  const poll = (async () => {
    while (polling && !held) {
      if (tracer(t.pid) !== '0') held = performance.now();
      await sleep(1);
    }
  })();
  const t0 = performance.now();
  await t.send('throw InvalidOperationException request Timeout', 'thrown');
  await running;
  polling = false;
  await poll;
  watcher.close();
  for (const f of readdirSync(dir)) rmSync(path.join(dir, f), { force: true, recursive: true });
  return [fired - t0, held - t0, file - t0];
}

async function exceptionTrigger(t: Target, dir: string): Promise<void> {
  console.log(
    `\n4. Exception trigger (-e -f '*Timeout*'), ms from the throw (median of ${ROUNDS}, ${MB} MB heap, full dump)`,
  );
  const xs: [number, number, number][] = [];
  for (let r = 0; r < ROUNDS; r++) xs.push(await exceptionLatency(t, dir));
  const cell = (i: number) => {
    const v = xs.map((x) => x[i]!);
    return [median(v).toFixed(0), `${Math.min(...v).toFixed(0)}-${Math.max(...v).toFixed(0)}`];
  };
  print([
    ['step', 'median ms', 'range'],
    ['tripdump sees the exception (fire)', ...cell(0)],
    ['the dump writer holds the target', ...cell(1)],
    ['the dump file appears', ...cell(2)],
  ]);
  console.log(
    "the EventPipe floor: the runtime's streaming thread sends buffered events every 100 ms; the dump shows the target from the moment it is held",
  );
}

function print(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const [n, r] of rows.entries()) {
    console.log(`| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`);
    if (n === 0) console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tripdump-bench-dotnet-'));
  const t = await startTarget();
  try {
    await t.send(`alloc ${MB}`, 'allocated');
    const info = await dotnetProcessInfo(t.pid);
    console.log(
      `machine: ${os.cpus()[0]?.model} x${os.cpus().length}; kernel ${os.release()}; node ${process.version}; ` +
        `.NET runtime ${info.clrProductVersion}; dotnet-dump ${spawnSync(tool('dotnet-dump'), ['--version'], { encoding: 'utf8' }).stdout.trim()}`,
    );
    console.log(
      `load (uptime): ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    const parts = (process.env.BENCH_DOTNET_PARTS ?? 'dumps,latency,cpu,exception').split(',');
    if (parts.includes('dumps')) await dumps(t, dir);
    if (parts.includes('latency')) await latency(t, dir);
    if (parts.includes('cpu')) await overhead(t);
    if (parts.includes('exception')) await exceptionTrigger(t, dir);
    console.log(
      `\nload at the end: ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    await dotnetConnections.closeAll();
    killAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  killAll();
  process.exit(1);
});
