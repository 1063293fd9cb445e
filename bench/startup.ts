// Start-up benchmark: how long the CLI takes from spawn to exit for commands that do almost nothing, side
// by side with `node -e 0`, in one run:
//  1. `node -e 0`, `tripdump --version`, `tripdump sample PID --count 1 --interval 1`, `tripdump dump PID
//     FILE` of a small idle target (`sleep`), N rounds interleaved (the order rotates every round). Timed
//     with process.hrtime around spawn() → 'exit' in this process (no hyperfine: the same clock for every
//     row, and the dump row's file is removed between rounds). `--interval 1` because sample's first line
//     comes one interval after the start by design (default 1 s), which is not start-up.
//  2. The dump itself, measured apart: writeCoreDump() of the same target in this process (addon loaded),
//     interleaved with the rounds above; the dump row minus it is what the command line adds.
//  3. Which modules each command loads: one more run of each with `--import` of a small preload that
//     registers a load hook (every ES module URL) and, at exit, reads require.cache (every CommonJS file,
//     which Node 20's hooks do not see); printed as a count of files (Node's built-in modules are not
//     files and not counted), plus the heavy packages among them.
// Output only: medians, the fastest round and ratios to `node -e 0`.
//
// Run: npm run bench:startup   (BENCH_STARTUP_ROUNDS=15 sets N)

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { writeCoreDump } from 'tripdump';
import { killAll, track } from './children.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const OUT_DIR = path.join(ROOT, 'build', 'bench');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const ROUNDS = Number(process.env.BENCH_STARTUP_ROUNDS ?? 15);
// Packages whose load time matters at start-up, and the rest of the dependencies, to say who loads what.
const HEAVY = ['ajv', 'yaml', 'prom-client', 'ws', 'picomatch', 'node-gyp-build'];

interface Command {
  label: string;
  args: (round: number) => string[];
  /** Removes what a run left (the dump file). */
  after?: (round: number) => void;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Milliseconds from spawn() to the child's exit; rejects on a non-zero exit, with its stderr. */
function timeRun(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child: ChildProcess = track(
      spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env }),
    );
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`node ${args.join(' ')}: exit ${code ?? signal}\n${stderr}`));
    });
  });
}

/** The preload for the module census: a load hook (in the hooks thread) and require.cache at exit. */
function writePreload(dir: string): string {
  const hooks = path.join(dir, 'census-hooks.mjs');
  writeFileSync(
    hooks,
    `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  if (url.startsWith('file:')) appendFileSync(process.env.BENCH_STARTUP_CENSUS, url + '\\n');
  return next(url, context);
}
`,
  );
  const preload = path.join(dir, 'census-preload.mjs');
  writeFileSync(
    preload,
    `import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { pathToFileURL } from 'node:url';
register(${JSON.stringify(pathToFileURL(hooks).href)});
const cache = createRequire(import.meta.url).cache;
process.on('exit', () => {
  const files = Object.keys(cache).map((f) => pathToFileURL(f).href);
  appendFileSync(process.env.BENCH_STARTUP_CENSUS, files.join('\\n') + '\\n');
});
`,
  );
  return preload;
}

interface Census {
  modules: number;
  tripdump: number;
  packages: Map<string, number>;
}

async function census(args: string[], preload: string, log: string): Promise<Census> {
  writeFileSync(log, '');
  await timeRun(['--import', pathToFileURL(preload).href, ...args], {
    ...process.env,
    BENCH_STARTUP_CENSUS: log,
  });
  const preloadUrls = new Set([
    pathToFileURL(preload).href,
    pathToFileURL(path.join(path.dirname(preload), 'census-hooks.mjs')).href,
  ]);
  const urls = new Set(
    readFileSync(log, 'utf8')
      .split('\n')
      .filter((u) => u && !preloadUrls.has(u)),
  );
  const packages = new Map<string, number>();
  let tripdump = 0;
  for (const u of urls) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u);
    if (m) packages.set(m[1]!, (packages.get(m[1]!) ?? 0) + 1);
    else if (u.startsWith(pathToFileURL(path.join(ROOT, 'dist')).href)) tripdump++;
  }
  return { modules: urls.size, tripdump, packages };
}

async function main(): Promise<void> {
  mkdirSync(OUT_DIR, { recursive: true });
  const work = mkdtempSync(path.join(os.tmpdir(), 'tripdump-bench-startup-'));
  const target = track(spawn('sleep', ['infinity'], { stdio: 'ignore' }));
  try {
    const pid = target.pid!;
    const corePath = (round: number, who: string) => path.join(work, `${who}-${round}.core`);
    const commands: Command[] = [
      { label: 'node -e 0', args: () => ['-e', '0'] },
      { label: 'tripdump --version', args: () => [CLI, '--version'] },
      {
        label: `tripdump sample PID --count 1 --interval 1`,
        args: () => [CLI, 'sample', String(pid), '--count', '1', '--interval', '1'],
      },
      {
        label: 'tripdump dump PID FILE',
        args: (round) => [CLI, 'dump', String(pid), corePath(round, 'cli')],
        after: (round) => rmSync(corePath(round, 'cli'), { force: true }),
      },
    ];
    const times = commands.map(() => [] as number[]);
    const inProcess: number[] = [];
    // One warm-up round of everything (page cache, the addon's first load) that is not counted.
    for (const [i, c] of commands.entries()) {
      await timeRun(c.args(-1 - i));
      c.after?.(-1 - i);
    }
    await writeCoreDump(pid, corePath(-1, 'lib'));
    rmSync(corePath(-1, 'lib'));
    const load0 = os.loadavg()[0]!;
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order so that no command always runs right after the dump (page cache, writeback).
      for (let k = 0; k <= commands.length; k++) {
        const i = (round + k) % (commands.length + 1);
        if (i === commands.length) {
          const t0 = process.hrtime.bigint();
          await writeCoreDump(pid, corePath(round, 'lib'));
          inProcess.push(Number(process.hrtime.bigint() - t0) / 1e6);
          rmSync(corePath(round, 'lib'));
          continue;
        }
        const c = commands[i]!;
        times[i]!.push(await timeRun(c.args(round)));
        c.after?.(round);
      }
    }
    const load1 = os.loadavg()[0]!;

    const preload = writePreload(OUT_DIR);
    const log = path.join(work, 'census.txt');
    const censuses: Census[] = [];
    for (const [i, c] of commands.entries()) {
      censuses.push(await census(c.args(1000 + i), preload, log));
      c.after?.(1000 + i);
    }

    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    console.log(
      `Start-up, spawn → exit (process.hrtime in the parent), ${ROUNDS} interleaved rounds after one warm-up\n` +
        `machine: ${os.cpus()[0]?.model} x${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; ` +
        `kernel ${os.release()}; node ${process.version}; tripdump ${pkg.version}\n` +
        `load average (1 min) ${load0.toFixed(2)} before, ${load1.toFixed(2)} after: other processes' work shows in the medians\n`,
    );
    const base = median(times[0]!);
    const rows = commands.map((c, i) => {
      const t = times[i]!;
      const cen = censuses[i]!;
      const heavy = HEAVY.filter((h) => cen.packages.has(h));
      return [
        c.label,
        median(t).toFixed(1),
        Math.min(...t).toFixed(1),
        `${(median(t) / base).toFixed(2)}×`,
        `${cen.modules} (${cen.tripdump} tripdump)`,
        heavy.length ? heavy.join(', ') : '-',
      ];
    });
    const head = [
      'command',
      'median ms',
      'fastest ms',
      'vs node -e 0',
      'module files loaded',
      'heavy packages loaded',
    ];
    const widths = head.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k]!.length)));
    const line = (cells: string[]) =>
      cells
        .map((cell, k) => (k === 0 || k >= 4 ? cell.padEnd(widths[k]!) : cell.padStart(widths[k]!)))
        .join('  ');
    console.log(line(head));
    for (const r of rows) console.log(line(r));
    const dumpRow = times[commands.length - 1]!;
    console.log(
      `\nwriteCoreDump() of the same target in this process: median ${median(inProcess).toFixed(1)} ms ` +
        `(fastest ${Math.min(...inProcess).toFixed(1)}); the dump command less the dump itself: ` +
        `${(median(dumpRow) - median(inProcess)).toFixed(1)} ms, ${((median(dumpRow) - median(inProcess)) / base).toFixed(2)}× node -e 0`,
    );
    console.log('\nPackages loaded (files) per command:');
    for (const [i, c] of commands.entries()) {
      const list = [...censuses[i]!.packages].sort((a, b) => b[1] - a[1]).map(([p, n]) => `${p} ${n}`);
      console.log(`  ${c.label}: ${list.length ? list.join(', ') : 'none'}`);
    }
  } finally {
    target.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    killAll();
    process.exit(1);
  },
);
