// Node target benchmark, in one run (printed, never asserted; docs/design.md §16's targets in the verdict lines):
//  1. A heap snapshot of a 200 MB heap: tripdump from outside (`tripdump node snapshot`, the CLI as a user
//     runs it) against Node's own `--heapsnapshot-signal` and in-process `v8.writeHeapSnapshot()`, on the
//     same target, rounds interleaved: elapsed, how long the target was paused (the largest gap in its 20 ms
//     heartbeat), and tripdump's peak RSS (flat if the snapshot is streamed, as it must be), beside the peak
//     RSS of `tripdump node stack` on the same target as the baseline.
//  2. The --loop-delay trigger: from the moment the target's loop blocks to the moment its stack is taken,
//     and from asking the paused stack to getting it.
//
// Run: npm run bench:node   (BENCH_NODE_HEAP_MB=200 and BENCH_NODE_ROUNDS=3 set the heap and the rounds)

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { killAll, track } from './children.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const TARGET = path.join(ROOT, 'test', 'fixtures', 'node', 'target.mjs');
const HEAP_MB = Number(process.env.BENCH_NODE_HEAP_MB ?? 200);
const ROUNDS = Number(process.env.BENCH_NODE_ROUNDS ?? 3);
const LOOP_ROUNDS = 5;
const LOOP_DELAY_MS = 200;
const POLL_MS = 100;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The fixture target, with its heartbeat and command lines. */
class Target {
  readonly child: ChildProcess;
  readonly beats: number[] = [];
  readonly lines: string[] = [];
  #waiters = new Set<() => void>();

  constructor(cwd: string, nodeArgs: string[], heapMb: number) {
    this.child = track(
      spawn(process.execPath, [...nodeArgs, TARGET], {
        cwd,
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { ...process.env, NODE_OPTIONS: '', FIXTURE_HEAP_MB: String(heapMb) },
      }),
    );
    let partial = '';
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (d: string) => {
      partial += d;
      for (let nl = partial.indexOf('\n'); nl >= 0; nl = partial.indexOf('\n')) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        if (line.startsWith('hb ')) this.beats.push(Number(line.split(' ')[2]));
        else this.lines.push(line);
      }
      for (const w of this.#waiters) w();
    });
    this.child.stderr!.resume();
  }

  get pid(): number {
    return this.child.pid!;
  }

  line(prefix: string, from = 0, timeoutMs = 600_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.lines.slice(from).find((l) => l.startsWith(prefix));
        if (hit === undefined) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve(hit);
      };
      const timer = setTimeout(() => reject(new Error(`no '${prefix}' from the target`)), timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  command(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** The largest heartbeat gap from beat index `from` on, ms, once `settle` more beats have come. */
  async gapSince(from: number, settle = 5): Promise<number> {
    const goal = from + settle;
    while (this.beats.length < goal) await sleep(20);
    let gap = 0;
    for (let i = Math.max(1, from); i < this.beats.length; i++)
      gap = Math.max(gap, this.beats[i]! - this.beats[i - 1]!);
    return gap;
  }
}

interface Timed {
  stdout: string;
  elapsedS: number;
  maxRssKiB: number;
}

/** Runs the CLI under GNU time for its peak RSS. */
function runCli(args: string[], cwd: string): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const child = track(
      spawn('/usr/bin/time', ['-f', 'TIME %e %M', process.execPath, CLI, ...args], {
        cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.once('exit', (code) => {
      const m = /TIME ([\d.]+) (\d+)/.exec(err);
      if (code !== 0 || !m) reject(new Error(`tripdump ${args.join(' ')} failed (${code}): ${err}`));
      else resolve({ stdout: out, elapsedS: Number(m[1]), maxRssKiB: Number(m[2]) });
    });
  });
}

interface SnapRow {
  writer: string;
  elapsedS: number[];
  pauseMs: number[];
  sizeMiB: number[];
  rssMiB: number[];
}

function removeSnapshots(dir: string): void {
  for (const f of readdirSync(dir)) if (f.endsWith('.heapsnapshot')) rmSync(path.join(dir, f));
}

function snapshotSize(dir: string): number {
  const f = readdirSync(dir).find((x) => x.endsWith('.heapsnapshot'));
  if (!f) throw new Error(`no heap snapshot in ${dir}`);
  return statSync(path.join(dir, f)).size / 2 ** 20;
}

async function benchSnapshots(work: string): Promise<{ rows: SnapRow[]; baselineRssMiB: number[] }> {
  const t = new Target(work, ['--heapsnapshot-signal=SIGUSR2', '--inspect-port=0'], HEAP_MB);
  await t.line('ready');
  const heap = await runCli(['node', 'report', String(t.pid), path.join(work, 'report.json')], work);
  const report = JSON.parse(readFileSync(path.join(work, 'report.json'), 'utf8')) as {
    javascriptHeap: { usedMemory: number };
  };
  rmSync(path.join(work, 'report.json'));
  console.log(
    `target: pid ${t.pid}, V8 heap used ${(report.javascriptHeap.usedMemory / 2 ** 20).toFixed(0)} MiB (report taken in ${heap.elapsedS} s)`,
  );
  const rows: SnapRow[] = [
    'tripdump node snapshot (outside)',
    'node --heapsnapshot-signal',
    'v8.writeHeapSnapshot() in-process',
  ].map((writer) => ({ writer, elapsedS: [], pauseMs: [], sizeMiB: [], rssMiB: [] }));
  const baselineRssMiB: number[] = [];
  const writers: (() => Promise<void>)[] = [
    // tripdump, from outside, as a user runs it.
    async () => {
      const from = t.beats.length;
      const r = await runCli(['node', 'snapshot', String(t.pid), work, '--json'], work);
      const row = rows[0]!;
      row.elapsedS.push(r.elapsedS);
      row.pauseMs.push(await t.gapSince(from));
      row.sizeMiB.push(snapshotSize(work));
      row.rssMiB.push(r.maxRssKiB / 1024);
      removeSnapshots(work);
      const stack = await runCli(['node', 'stack', String(t.pid)], work);
      baselineRssMiB.push(stack.maxRssKiB / 1024);
    },
    // Node's own signal: written in-process when the signal is handled; done when the heartbeat resumes.
    async () => {
      const from = t.beats.length;
      const sent = Date.now();
      process.kill(t.pid, 'SIGUSR2');
      await sleep(200);
      const gap = await t.gapSince(from);
      // The snapshot ends where the longest gap after the signal ends.
      let end = sent;
      for (let i = Math.max(1, from); i < t.beats.length; i++)
        if (t.beats[i]! - t.beats[i - 1]! === gap) end = t.beats[i]!;
      const row = rows[1]!;
      row.elapsedS.push((end - sent) / 1000);
      row.pauseMs.push(gap);
      row.sizeMiB.push(snapshotSize(work));
      removeSnapshots(work);
    },
    // In-process v8.writeHeapSnapshot(), timed by the target itself.
    async () => {
      const from = t.beats.length;
      const at = t.lines.length;
      t.command('snapshot');
      const line = await t.line('snapshot ', at);
      const row = rows[2]!;
      row.elapsedS.push(Number(line.split(' ')[2]) / 1000);
      row.pauseMs.push(await t.gapSince(from));
      row.sizeMiB.push(snapshotSize(work));
      removeSnapshots(work);
    },
  ];
  // The order turns each round, so that no writer always follows the same one (a snapshot leaves V8's
  // map of object ids behind, which speeds up the next; tripdump's HeapProfiler.disable frees it).
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < writers.length; k++) await writers[(round + k) % writers.length]!();
    console.log(`  round ${round + 1}/${ROUNDS} done`);
  }
  t.child.kill('SIGKILL');
  return { rows, baselineRssMiB };
}

interface LoopRow {
  blockToStackMs: number[];
  askToStackMs: number[];
  pausedMs: number[];
}

async function benchLoopDelay(work: string): Promise<LoopRow> {
  const t = new Target(work, ['--inspect-port=0'], 0);
  await t.line('ready');
  const dir = mkdtempSync(path.join(work, 'loop-'));
  const monitor = track(
    spawn(
      process.execPath,
      [
        CLI,
        '--loop-delay',
        String(LOOP_DELAY_MS),
        '-pf',
        String(POLL_MS),
        '-n',
        String(LOOP_ROUNDS),
        '-s',
        '0',
        String(t.pid),
        dir,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ),
  );
  let out = '';
  monitor.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  monitor.stderr!.resume();
  const exited = new Promise((r) => monitor.once('exit', r));
  while (!/Press Ctrl-C/.test(out)) await sleep(20);
  await sleep(1000);
  const row: LoopRow = { blockToStackMs: [], askToStackMs: [], pausedMs: [] };
  for (let i = 0; i < LOOP_ROUNDS; i++) {
    const at = t.lines.length;
    t.command('block 2000');
    const blocking = Number((await t.line('blocking', at)).split(' ')[1]);
    await t.line('unblocked', at);
    while ((out.match(/JavaScript stack \d+ captured/g) ?? []).length <= i) await sleep(20);
    const file = readdirSync(dir)
      .filter((f) => f.endsWith('.stack.json'))
      .sort()
      .map(
        (f) =>
          // The stack file: the process and the trigger, then the stack's own fields.
          JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as {
            time: string;
            latencyMs: number;
            pausedMs: number;
          },
      )
      .sort((a, b) => Date.parse(a.time) - Date.parse(b.time))[i]!;
    row.blockToStackMs.push(Date.parse(file.time) - blocking);
    row.askToStackMs.push(file.latencyMs);
    row.pausedMs.push(file.pausedMs);
    await sleep(POLL_MS * 3);
  }
  await exited;
  t.child.kill('SIGKILL');
  return row;
}

async function main(): Promise<void> {
  if (spawnSync(process.execPath, [CLI, '--version']).status !== 0)
    throw new Error(`${CLI} is missing: run npm run build first`);
  const work = mkdtempSync(path.join(os.tmpdir(), 'tripdump-bench-node-'));
  const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log('tripdump Node target benchmark');
  console.log(
    `machine: ${os.cpus()[0]?.model} x${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; kernel ${os.release()}; node ${process.version}`,
  );
  console.log(`load at start: ${load()} (1/5/15-min); snapshot folder ${work}\n`);
  try {
    const { rows, baselineRssMiB } = await benchSnapshots(work);
    const fmt = (xs: number[], d: number) =>
      xs.length === 0
        ? '-'
        : `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
    console.log(`\nHeap snapshot of a ${HEAP_MB} MB heap, median of ${ROUNDS} (range):`);
    console.log('| writer | elapsed s | target pause ms | snapshot MiB | peak RSS of the writer MiB |');
    console.log('|---|---|---|---|---|');
    for (const r of rows)
      console.log(
        `| ${r.writer} | ${fmt(r.elapsedS, 2)} | ${fmt(r.pauseMs, 0)} | ${fmt(r.sizeMiB, 0)} | ${r.rssMiB.length ? fmt(r.rssMiB, 0) : '(the target)'} |`,
      );
    console.log(`| tripdump node stack (RSS baseline) | - | - | - | ${fmt(baselineRssMiB, 0)} |`);
    console.log(
      '\n(elapsed: tripdump end to end, the CLI started, inspector opened with SIGUSR1, snapshot streamed, inspector closed; --heapsnapshot-signal from the signal to the end of the heartbeat gap; v8.writeHeapSnapshot() as the target times it. pause: the largest gap in the 20 ms heartbeat.)',
    );
    const loop = await benchLoopDelay(work);
    console.log(
      `\n--loop-delay ${LOOP_DELAY_MS} -pf ${POLL_MS}, loop blocked 2 s, ${LOOP_ROUNDS} blocks, median (range):`,
    );
    console.log('| measure | ms |');
    console.log('|---|---|');
    console.log(`| block start → stack taken | ${fmt(loop.blockToStackMs, 0)} |`);
    console.log(
      `| asked to pause → paused (Debugger.pause on the blocked loop) | ${fmt(loop.askToStackMs, 1)} |`,
    );
    console.log(`| target paused for the stack | ${fmt(loop.pausedMs, 1)} |`);
    const out = rows[0]!;
    const inproc = rows[2]!;
    const ratio = median(out.elapsedS) / median(inproc.elapsedS);
    console.log('\nTargets (docs/design.md §16):');
    console.log(
      `  snapshot from outside / in-process v8.writeHeapSnapshot() (medians) = ${ratio.toFixed(2)} (target ≤ 1.2): ${ratio <= 1.2 ? 'met' : 'NOT met'}`,
    );
    console.log(
      `  tripdump's peak RSS while streaming ${median(out.sizeMiB).toFixed(0)} MiB: ${median(out.rssMiB).toFixed(0)} MiB against ${median(baselineRssMiB).toFixed(0)} MiB for a stack (flat: ${median(out.rssMiB) - median(baselineRssMiB) < 0.25 * median(out.sizeMiB) ? 'yes' : 'NO'})`,
    );
    const ask = median(loop.blockToStackMs) - LOOP_DELAY_MS;
    console.log(
      `  blocked-loop stack within 500 ms of asking: ${ask.toFixed(0)} ms after the ${LOOP_DELAY_MS} ms threshold (${ask <= 500 ? 'met' : 'NOT met'})`,
    );
    console.log(`load at end: ${load()}`);
  } finally {
    killAll();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  killAll();
  process.exitCode = 1;
});
