// Monitor lifecycle benchmark (issue 12, "Long-running"): `tripdump -w NAME` watching 1,000 matching
// sleepers while matching short-lived processes come and go at 100 a second for 10 minutes. Prints the
// monitor's RSS and CPU before the churn, during its first and last minute, and after it (sleepers only
// again), plus how many targets it added and saw exit. A monitor that forgets exited targets ends where it
// started; one that keeps them grows by its churn rate and its CPU climbs with it.
// BENCH_CHURN_BASELINE=/path/to/other/dist/cli/main.js runs another build's CLI beside this one, on the
// same processes at the same time, for a before/after comparison.
//
// Run: npm run bench:churn   (BENCH_CHURN_MINUTES=10, BENCH_CHURN_SLEEPERS=1000, BENCH_CHURN_RATE=100,
//                             BENCH_CHURN_LIFE_MS=1000: each short-lived process lives 0 to this many ms)

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { killAll, track } from './children.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const OUT_DIR = path.join(ROOT, 'build', 'bench');
const CHURN = path.join(OUT_DIR, 'churn');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const env = (name: string, dflt: number) => {
  const v = Number(process.env[name] ?? dflt);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number`);
  return v;
};
const MINUTES = env('BENCH_CHURN_MINUTES', 10);
const SLEEPERS = env('BENCH_CHURN_SLEEPERS', 1000);
const RATE = env('BENCH_CHURN_RATE', 100);
const LIFE_MS = env('BENCH_CHURN_LIFE_MS', 1000);
/** Length of the before/after windows and of the "first"/"last minute" windows (shorter runs: less). */
const WINDOW_S = Math.min(60, (MINUTES * 60) / 2);
const TICK_S = 5;
const MIB = 2 ** 20;
const HZ = 100; // USER_HZ: /proc's clock ticks

interface Sample {
  t: number; // s since the bench started
  rss: number; // bytes
  ticks: number; // utime + stime of the whole process
}

interface Watched {
  label: string;
  child: ChildProcess;
  added: number;
  exits: number;
  errors: string[];
  samples: Sample[];
  exitCode?: number | null;
  /** When it exited (s since the bench started). */
  endedAt?: number;
}

const load = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
const t0 = performance.now();
const now = () => (performance.now() - t0) / 1000;
const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));

function sample(pid: number): Sample | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'latin1');
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const rssKb = Number(status.match(/^VmRSS:\s+(\d+) kB/m)?.[1] ?? Number.NaN);
    return { t: now(), rss: rssKb * 1024, ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return undefined;
  }
}

function lines(child: ChildProcess, onLine: (line: string) => void): void {
  let partial = '';
  const onData = (d: Buffer) => {
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const line of parts) onLine(line);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
}

function startMonitor(label: string, cli: string, name: string, dir: string): Watched {
  // A threshold no target reaches (the host's whole memory): the monitor only watches, which is what
  // churn costs.
  const mb = Math.floor(os.totalmem() / MIB);
  const child = track(
    spawn(process.execPath, [cli, '-w', name, '-m', String(mb), '-pf', '1000', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const w: Watched = { label, child, added: 0, exits: 0, errors: [], samples: [] };
  lines(child, (line) => {
    if (line.includes('Monitoring ')) w.added++;
    else if (line.includes('Process exited')) w.exits++;
    else if (/ERROR|failed|tripdump:/.test(line)) w.errors.push(line);
  });
  child.once('exit', (code) => {
    w.exitCode = code;
    w.endedAt = now();
  });
  return w;
}

/** RSS at the sample nearest to time t. */
function rssAt(w: Watched, t: number): number {
  let best = w.samples[0]!;
  for (const s of w.samples) if (Math.abs(s.t - t) < Math.abs(best.t - t)) best = s;
  return best.rss / MIB;
}

/** Percent of one core used between times a and b. */
function cpuBetween(w: Watched, a: number, b: number): number {
  const inside = w.samples.filter((s) => s.t >= a - TICK_S / 2 && s.t <= b + TICK_S / 2);
  if (inside.length < 2) return Number.NaN;
  const first = inside[0]!;
  const last = inside.at(-1)!;
  return (100 * (last.ticks - first.ticks)) / HZ / (last.t - first.t);
}

/** MiB per minute, least squares over the samples between a and b. */
function slope(w: Watched, a: number, b: number): number {
  const xs = w.samples.filter((s) => s.t >= a && s.t <= b);
  if (xs.length < 3) return Number.NaN;
  const mx = xs.reduce((s, x) => s + x.t, 0) / xs.length;
  const my = xs.reduce((s, x) => s + x.rss, 0) / xs.length;
  let num = 0;
  let den = 0;
  for (const x of xs) {
    num += (x.t - mx) * (x.rss - my);
    den += (x.t - mx) ** 2;
  }
  return ((num / den) * 60) / MIB;
}

async function main(): Promise<void> {
  mkdirSync(OUT_DIR, { recursive: true });
  execFileSync('cc', ['-O2', '-pthread', '-o', CHURN, path.join(ROOT, 'test', 'fixtures', 'churn.c')]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tripdump-bench-churn-'));
  const name = `tdbench${process.pid % 10_000_000}`.slice(0, 15);
  const total = Math.round(RATE * 60 * MINUTES);
  console.log('tripdump monitor lifecycle benchmark: -w NAME under process churn');
  console.log(
    `machine: ${os.cpus()[0]?.model} x${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; kernel ${os.release()}; node ${process.version}`,
  );
  console.log(
    `workload: ${SLEEPERS} matching sleepers; then ${total} matching short-lived processes at ${RATE}/s (each lives 0-${LIFE_MS} ms) for ${MINUTES} min; -pf 1000`,
  );
  console.log(`load average at start: ${load()}\n`);

  const churn = track(
    spawn(
      CHURN,
      [
        '--name',
        name,
        '--sleepers',
        String(SLEEPERS),
        '--total',
        String(total),
        '--rate',
        String(RATE),
        '--life-ms',
        String(LIFE_MS),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    ),
  );
  const churnLines: string[] = [];
  lines(churn, (l) => churnLines.push(l));
  const until = async (what: string, ok: () => boolean, timeoutS: number) => {
    const end = now() + timeoutS;
    while (!ok()) {
      if (now() > end) throw new Error(`timed out waiting for ${what}`);
      await sleep(0.1);
    }
  };
  await until('the sleepers', () => churnLines.includes('ready'), 60);

  const monitors = [startMonitor('tripdump (this tree)', CLI, name, dir)];
  const baseline = process.env.BENCH_CHURN_BASELINE;
  if (baseline) monitors.push(startMonitor(`baseline (${baseline})`, baseline, name, dir));
  const ticker = setInterval(() => {
    for (const w of monitors) {
      const s = sample(w.child.pid!);
      if (s) w.samples.push(s);
    }
  }, TICK_S * 1000);
  try {
    await until('every monitor to add the sleepers', () => monitors.every((w) => w.added >= SLEEPERS), 300);
    // Settle (V8's start-up collections), then the "before" window: the sleepers only.
    await sleep(10);
    const before = [now(), now() + WINDOW_S] as const;
    await sleep(WINDOW_S);
    console.log(`churn starts (load ${load()})`);
    churn.stdin!.write('go\n');
    const churnStart = now();
    const report = setInterval(
      () =>
        console.log(
          `  ${((now() - churnStart) / 60).toFixed(1)} min: ${monitors
            .map(
              (w) =>
                `${w.label.split(' ')[0]} RSS ${(w.samples.at(-1)!.rss / MIB).toFixed(0)} MiB, ${w.added} added, ${w.exits} exited${w.exitCode !== undefined ? `, ENDED (exit ${w.exitCode})` : ''}`,
            )
            .join('; ')}; load ${load()}`,
        ),
      60_000,
    );
    await until('the churn to end', () => churnLines.includes('done'), MINUTES * 60 * 3 + 120);
    clearInterval(report);
    const churnEnd = now();
    await sleep(10); // the last short-lived ones are seen to exit
    const after = [now(), now() + WINDOW_S] as const;
    await sleep(WINDOW_S);
    console.log(`churn over after ${((churnEnd - churnStart) / 60).toFixed(1)} min (load ${load()})\n`);

    // Ctrl-C: each monitor must stop cleanly.
    const interrupted = now();
    for (const w of monitors) if (w.exitCode === undefined) w.child.kill('SIGINT');
    await until('the monitors to stop', () => monitors.every((w) => w.exitCode !== undefined), 30);

    const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
    console.log(
      `| monitor | RSS MiB before | at churn start +1 min | at churn end | after (sleepers only) | RSS growth during churn, MiB/min | CPU % before | CPU % first min of churn | CPU % last min | CPU % after | targets added | exits seen | ended early |`,
    );
    console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    const first = [churnStart, churnStart + WINDOW_S] as const;
    const last = [churnEnd - WINDOW_S, churnEnd] as const;
    for (const w of monitors) {
      console.log(
        `| ${w.label} | ${f(rssAt(w, before[1]), 0)} | ${f(rssAt(w, churnStart + 60), 0)} | ${f(rssAt(w, churnEnd), 0)} | ${f(rssAt(w, after[1]), 0)} | ${f(slope(w, churnStart + WINDOW_S / 2, churnEnd), 2)} | ${f(cpuBetween(w, ...before))} | ${f(cpuBetween(w, ...first))} | ${f(cpuBetween(w, ...last))} | ${f(cpuBetween(w, ...after))} | ${w.added} | ${w.exits} | ${(w.endedAt ?? interrupted) < interrupted ? `after ${((w.endedAt! - churnStart) / 60).toFixed(1)} min of churn, exit ${w.exitCode}` : `no (Ctrl-C: exit ${w.exitCode})`} |`,
      );
      for (const e of w.errors.slice(0, 5)) console.log(`    ${w.label}: ${e}`);
    }
    console.log(
      `\n(CPU: percent of one core, utime+stime of the monitor's process; RSS: VmRSS; windows of ${WINDOW_S} s)`,
    );
    console.log(`load average at end: ${load()}`);
    const leftovers = readdirSync(dir);
    if (leftovers.length) console.log(`unexpected files written: ${leftovers.join(', ')}`);
  } finally {
    clearInterval(ticker);
    killAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  killAll();
  console.error(e);
  process.exit(1);
});
