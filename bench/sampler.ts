// Sampler benchmark: µs per process per sample for tripdump's public JS API against a C reference loop over
// the same /proc files and against the usual peers (pidusage, psutil, ps), over idle processes this
// benchmark spawns and kills itself; plus the longest event-loop stall during async sweeps of 10,000
// processes. Output only: the targets of docs/design.md §16 are judged in the printed verdicts, never asserted.
//
// Run: npm run bench:sampler  (compiles bench/*.c with cc into build/bench/ first)

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const OUT_DIR = path.join(ROOT, 'build', 'bench');
const IDLE_TARGET = path.join(OUT_DIR, 'idle_target');
const REF_SAMPLER = path.join(OUT_DIR, 'ref_sampler');
const SYSTEM_PYTHON = '/usr/bin/python3';

const PROCESSES = 2000;
const STALL_PROCESSES = 10_000;
const STALL_SWEEPS = 20;
const STALL_TARGET_MS = 5;
const RATIO_TARGET = 1.15;
const PIDUSAGE_TARGET = 3;
// The C loop and tripdump are run in interleaved passes so that drift in the host (frequency, noisy
// neighbours on a VM) hits both sides of each ratio alike; the median is taken over all pooled rounds.
const PASSES = 8;
const WARMUP = 3;
const ROUNDS_PER_PASS = 9;
const PEER_WARMUP = 2;
const PEER_ROUNDS = 11;
// pidusage is one side of a target ratio, so it is interleaved with the passes too.
const PIDUSAGE_ROUNDS_PER_PASS = 3;
const PS_ROUNDS = 7;
// tripdump's default sweepThreads; the C loop is run with as many threads so each ratio compares like
// with like, and both are also run on one thread.
const THREADS = Math.min(4, os.availableParallelism());
const THREAD_COUNTS = THREADS > 1 ? [1, THREADS] : [1];

// pgid is included so the set matches the C loop's 13 stat values field for field.
const STAT_FIELDS = [
  'pid',
  'ppid',
  'pgid',
  'comm',
  'state',
  'userTicks',
  'systemTicks',
  'threads',
  'startTime',
  'vmBytes',
  'rssBytes',
  'minorFaults',
  'majorFaults',
] as const;
const FULL_FIELDS = [
  ...STAT_FIELDS,
  'sharedBytes',
  'textBytes',
  'dataBytes',
  'readBytes',
  'writeBytes',
  'readChars',
  'writeChars',
  'fds',
] as const;

// ---------------------------------------------------------------------------------------------------------
// Child processes. Everything the bench starts is tracked here so it can be killed by pid on any exit path.
// The idle-process spawners get SIGTERM rather than SIGKILL: they then SIGKILL and reap their own children,
// which only the parent can do without racing pid reuse (and PR_SET_PDEATHSIG covers a spawner that dies).

const live = new Set<ChildProcess>();
const spawners = new Set<ChildProcess>();

function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

function killAllSync(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(spawners.has(child) ? 'SIGTERM' : 'SIGKILL');
    }
  }
}

interface RunResult {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Wall time from just before spawn to exit, for readers whose cost includes starting a process. */
  ms: number;
}

function run(cmd: string, args: readonly string[], input: string, timeoutMs = 120_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = track(spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
    });
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code, signal, ms: performance.now() - t0 });
    });
    // A child that exits without reading its input must not turn into an unhandled EPIPE.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input);
  });
}

/** A set of idle processes (children of one idle_target spawner that each sit in pause()). */
class IdleGroup {
  private constructor(
    private readonly child: ChildProcess,
    readonly pids: readonly number[],
    readonly spawnMs: number,
  ) {}

  static start(count: number): Promise<IdleGroup> {
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const child = track(spawn(IDLE_TARGET, [String(count)], { stdio: ['pipe', 'pipe', 'pipe'] }));
      spawners.add(child);
      child.stdin?.on('error', () => {});
      let buffered = '';
      let stderr = '';
      let settled = false;
      const pids: number[] = [];
      const fail = (why: string): void => {
        if (settled) return;
        settled = true;
        child.kill('SIGTERM');
        reject(new Error(`idle_target ${count}: ${why}${stderr ? `: ${stderr.trim()}` : ''}`));
      };
      const timer = setTimeout(() => fail('not ready after 60 s'), 60_000);
      child.stderr?.setEncoding('utf8').on('data', (s: string) => {
        stderr += s;
      });
      child.stdout?.setEncoding('utf8').on('data', (s: string) => {
        if (settled) return;
        buffered += s;
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          if (line === 'ready') {
            settled = true;
            clearTimeout(timer);
            if (pids.length !== count) {
              child.kill('SIGTERM');
              reject(new Error(`idle_target printed ${pids.length} pids, expected ${count}`));
              return;
            }
            resolve(new IdleGroup(child, pids, performance.now() - t0));
            return;
          }
          pids.push(Number.parseInt(line, 10));
        }
      });
      child.once('error', (err) => fail(err.message));
      child.once('exit', (code, signal) => fail(`exited early (code ${code}, signal ${signal})`));
    });
  }

  /** Asks the spawner to SIGKILL and reap every child; resolves once it has exited. */
  stop(): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // The children die with it through PR_SET_PDEATHSIG.
        child.kill('SIGKILL');
        reject(new Error('idle_target did not exit within 30 s of "quit"; killed it'));
      }, 30_000);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else reject(new Error(`idle_target exited with code ${code}, signal ${signal}`));
      });
      child.stdin?.end('quit\n');
    });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Small helpers.

function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function firstLine(text: string): string {
  return text.split('\n')[0]?.trim() ?? '';
}

function tryExec(cmd: string, args: readonly string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return null;
  }
}

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function readNumber(file: string): number | null {
  const text = readText(file);
  if (text === null) return null;
  const value = Number.parseInt(text.trim(), 10);
  return Number.isFinite(value) ? value : null;
}

function progress(text: string): void {
  process.stderr.write(`  … ${text}\n`);
}

const oddities: string[] = [];

// Other work on the host (a build, tests) shares the same cores and shows up as both slower rounds and
// event-loop gaps that have nothing to do with the sampler; the bench measures it so the output says so.
interface CpuMark {
  wall: number;
  busy: number;
  own: number;
}

function cpuMark(): CpuMark {
  const host = (readText('/proc/stat') ?? '').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  // user nice system (idle) (iowait) irq softirq steal; guest time is already inside user.
  const busy = [0, 1, 2, 5, 6, 7].reduce((sum, i) => sum + (host[i] ?? 0), 0);
  const self = readText('/proc/self/stat') ?? '';
  const rest = self.slice(self.lastIndexOf(')') + 2).split(' ');
  // utime stime cutime cstime: this process (all threads) plus the children it has reaped (C loop, peers).
  const own = [11, 12, 13, 14].reduce((sum, i) => sum + Number(rest[i] ?? 0), 0);
  return { wall: performance.now(), busy, own };
}

/** Cores' worth of CPU used by processes other than the bench between two marks (USER_HZ is 100). */
function foreignCores(a: CpuMark, b: CpuMark): number {
  const ticks = b.busy - a.busy - (b.own - a.own);
  return Math.max(0, ticks / 100 / ((b.wall - a.wall) / 1000));
}

// ---------------------------------------------------------------------------------------------------------
// tripdump. Loaded through its public package name at run time, with only the shape the bench uses
// declared here: the C loop and the peers must still be measured when the addon has not been built.

interface SnapshotLike {
  readonly length: number;
  /** The native sweep alone, without the JS and N-API layers around it. */
  readonly durationMs?: number;
  get(pid: number): Readonly<Record<string, unknown>> | undefined;
}
interface SamplerLike {
  watch(pid: number): unknown;
  watchAsync(pids: readonly number[]): Promise<unknown[]>;
  sample(): SnapshotLike;
  sampleAsync(): Promise<SnapshotLike>;
  close(): void;
}
type SamplerCtor = new (options: {
  fields?: readonly string[];
  all?: boolean;
  sweepThreads?: number;
}) => SamplerLike;

type FdBudget = () => { limit: number; inUse: number };
type Tripdump = { Sampler: SamplerCtor; fdBudget: FdBudget };

async function loadTripdump(): Promise<Tripdump | { reason: string }> {
  // A string-typed specifier keeps tsc from resolving the package's own types, which do not exist
  // until `npm run build` has run.
  const specifier: string = 'tripdump';
  try {
    const mod: unknown = await import(specifier);
    if (
      typeof mod === 'object' &&
      mod !== null &&
      'Sampler' in mod &&
      typeof mod.Sampler === 'function' &&
      'fdBudget' in mod &&
      typeof mod.fdBudget === 'function'
    ) {
      return { Sampler: mod.Sampler as SamplerCtor, fdBudget: mod.fdBudget as FdBudget };
    }
    return { reason: 'the tripdump package does not export Sampler and fdBudget' };
  } catch (err) {
    return { reason: `cannot load tripdump (run \`npm run build\`): ${message(err)}` };
  }
}

/** Reads the result so a lazily built snapshot cannot skip work; flags wrong counts once. */
function touch(snap: SnapshotLike, pid: number, expected: number, label: string): void {
  const rec = snap.get(pid);
  if (snap.length !== expected || rec === undefined) {
    const why = `${label}: snapshot has ${snap.length} records (expected ${expected}), get(${pid}) ${rec === undefined ? 'is undefined' : 'ok'}`;
    if (!oddities.includes(why)) oddities.push(why);
  }
}

/** One untimed look at a record: does the API return what the C loop sees for an idle child? */
function checkRecord(snap: SnapshotLike, pid: number, fields: readonly string[], label: string): void {
  const rec = snap.get(pid);
  if (rec === undefined) {
    oddities.push(`${label}: no record for watched pid ${pid}`);
    return;
  }
  const missing = fields.filter((f) => rec[f] === undefined || rec[f] === null);
  if (missing.length > 0) oddities.push(`${label}: pid ${pid} has no value for ${missing.join(', ')}`);
  const expect: Record<string, unknown> = { pid, comm: 'idle_target', state: 'S', threads: 1, fds: 3 };
  for (const [field, want] of Object.entries(expect)) {
    if (fields.includes(field) && rec[field] !== undefined && rec[field] !== want) {
      oddities.push(`${label}: pid ${pid} ${field} = ${String(rec[field])}, expected ${String(want)}`);
    }
  }
}

function makeSampler(
  Sampler: SamplerCtor,
  fields: readonly string[],
  pids: readonly number[],
  sweepThreads: number,
): SamplerLike {
  const s = new Sampler({ fields, sweepThreads });
  for (const pid of pids) s.watch(pid);
  return s;
}

/** One timed round of sample() (sync) or sampleAsync() (awaited): µs per process, wall and native sweep. */
async function tripdumpRound(
  s: SamplerLike,
  mode: 'sync' | 'async',
  pids: readonly number[],
  label: string,
): Promise<{ us: number; nativeUs: number | null }> {
  const t0 = performance.now();
  const snap = mode === 'sync' ? s.sample() : await s.sampleAsync();
  touch(snap, pids[0]!, pids.length, label);
  const us = ((performance.now() - t0) * 1000) / pids.length;
  return {
    us,
    nativeUs: typeof snap.durationMs === 'number' ? (snap.durationMs * 1000) / pids.length : null,
  };
}

// ---------------------------------------------------------------------------------------------------------
// The C reference loop.

interface RefResult {
  failed: number;
  fd_count_from_size: boolean;
  first: Record<string, unknown>;
}

/**
 * ref_sampler serves rounds: its fds stay open and each round() runs one round there, so C rounds and
 * tripdump rounds can alternate one by one. On this kind of host the same loop drifts by a third between
 * runs seconds apart (other VMs, DAMON); a pair taken back to back shares the drift and their ratio does not.
 */
class RefServer {
  #child: ChildProcess;
  #lines: string[] = [];
  #waiting: ((line: string | null) => void) | null = null;
  #stderr = '';
  #closed: Promise<number | null>;
  #ended = false;

  constructor(
    readonly fields: string,
    readonly threads: number,
    pids: readonly number[],
  ) {
    this.#child = track(
      spawn(REF_SAMPLER, ['-f', fields, '-t', String(threads), '-w', String(WARMUP)], {
        stdio: ['pipe', 'pipe', 'pipe'],
      }),
    );
    let buffered = '';
    this.#child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      buffered += text;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) this.#push(line);
    });
    this.#child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      this.#stderr += text;
    });
    this.#child.stdin?.on('error', () => {});
    this.#closed = new Promise((resolve) =>
      this.#child.once('close', (code) => {
        this.#ended = true;
        this.#waiting?.(null);
        resolve(code);
      }),
    );
    this.#child.stdin?.write(`${pids.join('\n')}\n.\n`);
  }

  #push(line: string): void {
    const waiting = this.#waiting;
    this.#waiting = null;
    if (waiting) waiting(line);
    else this.#lines.push(line);
  }

  #next(): Promise<string | null> {
    const line = this.#lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.#ended) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.#waiting = resolve;
    });
  }

  /** One round; µs per process, measured inside the C process. */
  async round(): Promise<number> {
    this.#child.stdin?.write('r\n');
    const line = await this.#next();
    const us = Number.parseFloat(line ?? '');
    if (!Number.isFinite(us))
      throw new Error(
        `ref_sampler -f ${this.fields} -t ${this.threads}: ${line ?? 'exited'} ${this.#stderr}`,
      );
    return us;
  }

  /** Ends input; resolves with the summary (failed reads, the first record). */
  async finish(): Promise<RefResult> {
    this.#child.stdin?.end();
    let last = '';
    for (let line = await this.#next(); line !== null; line = await this.#next()) last = line;
    const code = await this.#closed;
    if (code !== 0 && code !== 3)
      throw new Error(`ref_sampler -f ${this.fields} -t ${this.threads} failed (${code}): ${this.#stderr}`);
    return JSON.parse(last) as RefResult;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Peers.

interface PeerResult {
  rounds_us: number[];
  /** CPU time of the whole reader process (all threads) per process, where measured. */
  cpu_us?: number[];
  version: string;
  returned?: number;
  error?: string;
}

/** pidusage runs in its own node process: its cache keeps one fd per pid and clear() drops them unclosed. */
async function pidusageWorker(): Promise<void> {
  const { default: pidusage } = await import('pidusage');
  const pids = readFileSync(0, 'utf8')
    .split(/\s+/)
    .filter((s) => s !== '')
    .map(Number);
  // The first call per pid reads stat twice and opens the fd it then keeps; steady state is what a
  // monitoring loop sees, so it is not timed.
  const count = Number.parseInt(process.argv[3] ?? String(PEER_ROUNDS), 10);
  let returned = 0;
  for (let i = 0; i < PEER_WARMUP; i++) returned = Object.keys(await pidusage(pids)).length;
  const rounds: number[] = [];
  // pidusage reads through the libuv pool (4 threads), so on an idle host its wall time can undercut its
  // CPU time; both are reported.
  const cpu: number[] = [];
  for (let i = 0; i < count; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const stats = await pidusage(pids);
    rounds.push(((performance.now() - t0) * 1000) / pids.length);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / pids.length);
    returned = Object.keys(stats).length;
  }
  const result: PeerResult = { rounds_us: rounds, cpu_us: cpu, version: pidusageVersion(), returned };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function pidusageVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    const pkgPath = path.join(path.dirname(require.resolve('pidusage')), 'package.json');
    return (JSON.parse(readFileSync(pkgPath, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

async function runPidusage(pids: readonly number[], rounds: number): Promise<PeerResult> {
  const self = fileURLToPath(import.meta.url);
  const r = await run(process.execPath, [self, '--pidusage-worker', String(rounds)], pids.join('\n'));
  if (r.code !== 0) throw new Error(`pidusage worker failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as PeerResult;
}

// Timed inside python so interpreter start-up is not charged to psutil. oneshot() is psutil's documented
// way to read several values of one process with the fewest file reads.
const PSUTIL_SCRIPT = `
import json, sys, time
try:
    import psutil
except ImportError as e:
    print(json.dumps({"error": "python3-psutil is not installed for ${SYSTEM_PYTHON} (%s)" % e, "rounds_us": [], "version": ""}))
    sys.exit(0)
warmup, rounds = int(sys.argv[1]), int(sys.argv[2])
procs = [psutil.Process(int(p)) for p in sys.stdin.read().split()]
def sweep():
    for p in procs:
        with p.oneshot():
            p.cpu_times()
            p.memory_info()
            p.num_threads()
for _ in range(warmup):
    sweep()
out = []
for _ in range(rounds):
    t0 = time.perf_counter_ns()
    sweep()
    out.append((time.perf_counter_ns() - t0) / 1e3 / len(procs))
print(json.dumps({"rounds_us": out, "version": psutil.__version__ + " (python " + sys.version.split()[0] + ")", "returned": len(procs)}))
`;

async function runPsutil(pids: readonly number[]): Promise<PeerResult> {
  if (!existsSync(SYSTEM_PYTHON)) return { rounds_us: [], version: '', error: `${SYSTEM_PYTHON} not found` };
  const r = await run(
    SYSTEM_PYTHON,
    ['-c', PSUTIL_SCRIPT, String(PEER_WARMUP), String(PEER_ROUNDS)],
    pids.join('\n'),
  );
  if (r.code !== 0)
    return { rounds_us: [], version: '', error: `python failed (${r.code}): ${firstLine(r.stderr)}` };
  return JSON.parse(r.stdout) as PeerResult;
}

async function runPs(pids: readonly number[]): Promise<PeerResult> {
  const args = ['-o', 'pid,rss,vsz,pcpu,nlwp', '-p', pids.join(',')];
  const rounds: number[] = [];
  let returned = 0;
  for (let i = 0; i < PS_ROUNDS + 1; i++) {
    const r = await run('ps', args, '');
    if (r.code !== 0)
      return { rounds_us: [], version: '', error: `ps failed (${r.code}): ${firstLine(r.stderr)}` };
    returned = r.stdout.split('\n').filter((l) => l.trim() !== '').length - 1;
    // The first run only warms the page cache for the ps binary and its libraries.
    if (i > 0) rounds.push((r.ms * 1000) / pids.length);
  }
  return { rounds_us: rounds, version: firstLine(tryExec('ps', ['--version']) ?? 'unknown'), returned };
}

// ---------------------------------------------------------------------------------------------------------
// Event-loop stall during async sweeps.

interface StallResult {
  processes: number;
  what: string;
  /** Main-thread time of the watch() calls that set the sampler up (they open the kept fds). */
  watchMs: number;
  /** Main-thread CPU spent in watchAsync() of every pid (the opens run on the sampler's thread). */
  watchCpuMs: number;
  sweeps: number;
  steady: ProbeResult;
  /** Main-thread CPU and run-queue wait during the first sweep (no probe running). */
  coldCpuMs: number;
  coldWaitMs: number;
  sweepMs: number;
  syncMs: number;
  /** The same probe for the same time with nothing sampling: what the host alone does to the loop. */
  baselineGapMs: number;
  /** The same control while one nice-19 busy loop runs: what any CPU-bound task does to the probe here. */
  busyBaselineGapMs: number;
  foreignDuringSweeps: number;
  foreignDuringBaseline: number;
  /** First get() on a fresh snapshot (a scan of the pid column), and the second (builds the pid → row index). */
  getMedianMs: number;
  getMaxMs: number;
  indexMedianMs: number;
  /** Main-thread on-CPU time per sweep, no probe running: an upper bound on the API's own blocking. */
  mainCpuMedianMs: number;
  mainCpuMaxMs: number;
  /** Longest total time per sweep the main thread sat runnable while other tasks held the cores. */
  runqWaitMaxMs: number;
}

interface ProbeResult {
  /** Longest gap between probe ticks, ms. */
  gap: number;
  /** Longest gap that contains a moment a sweep's promise resumed this code: API work on the main thread. */
  gapAtResolve: number;
  /** Longest gap that contains no such moment: the thread was preempted or busy with something else. */
  gapElsewhere: number;
  eld: number;
}

/**
 * A 1 ms interval recording its tick times, plus monitorEventLoopDelay at 1 ms resolution. A gap includes
 * the 1 ms period and every piece of main-thread work in it: the native completion callback, the promise
 * resolution and the awaiting code's continuation. Gaps are split by whether a resolve fell inside them,
 * because on a shared host the scheduler alone (other processes on the same cores) makes gaps too.
 */
function startProbe(): { resolved: () => void; stop: () => Promise<ProbeResult> } {
  const eld = monitorEventLoopDelay({ resolution: 1 });
  const ticks: number[] = [performance.now()];
  const resolves: number[] = [];
  const timer = setInterval(() => ticks.push(performance.now()), 1);
  eld.enable();
  return {
    resolved: () => resolves.push(performance.now()),
    stop: async () => {
      // Let the probe tick again so a stall in the last resolve is counted.
      await new Promise((r) => setTimeout(r, 10));
      clearInterval(timer);
      eld.disable();
      const out: ProbeResult = { gap: 0, gapAtResolve: 0, gapElsewhere: 0, eld: eld.max / 1e6 };
      let r = 0;
      for (let i = 1; i < ticks.length; i++) {
        const from = ticks[i - 1]!;
        const to = ticks[i]!;
        while (r < resolves.length && resolves[r]! < from) r++;
        const gap = to - from;
        out.gap = Math.max(out.gap, gap);
        if (r < resolves.length && resolves[r]! <= to) out.gapAtResolve = Math.max(out.gapAtResolve, gap);
        else out.gapElsewhere = Math.max(out.gapElsewhere, gap);
      }
      return out;
    },
  };
}

/** The main thread's on-CPU and run-queue-wait time so far, ms (/proc/PID/task/TID/schedstat, in ns). */
function mainThreadSched(): { cpu: number; wait: number } {
  const [cpu, wait] = (readText(`/proc/self/task/${process.pid}/schedstat`) ?? '0 0').split(' ').map(Number);
  return { cpu: (cpu ?? 0) / 1e6, wait: (wait ?? 0) / 1e6 };
}

async function measureStall(s: SamplerLike, expected: number, pid: number): Promise<StallResult> {
  // Only the length is read inside the probed sweeps: get() builds an index and is timed on its own below.
  const check = (snap: SnapshotLike): void => {
    const bad = expected > 0 ? snap.length !== expected : snap.length < 1;
    const why = `stall sweep: snapshot has ${snap.length} records (expected ${expected || 'some'})`;
    if (bad && !oddities.includes(why)) oddities.push(why);
  };

  // The first sweep lists every watched process in \`started\`; it is reported apart from the steady state,
  // as main-thread CPU with no probe running (the probe's own ticks would be counted otherwise).
  const coldBefore = mainThreadSched();
  check(await s.sampleAsync());
  const coldAfter = mainThreadSched();

  const m0 = cpuMark();
  const warm = startProbe();
  const times: number[] = [];
  // Run-queue wait: time the main thread was ready to run but other tasks held the cores.
  const wait: number[] = [];
  for (let i = 0; i < STALL_SWEEPS; i++) {
    const before = mainThreadSched();
    const t0 = performance.now();
    const snap = await s.sampleAsync();
    warm.resolved();
    check(snap);
    times.push(performance.now() - t0);
    wait.push(mainThreadSched().wait - before.wait);
  }
  const steady = await warm.stop();
  const m1 = cpuMark();

  const base = startProbe();
  await new Promise((r) => setTimeout(r, m1.wall - m0.wall));
  const baseline = await base.stop();
  const m2 = cpuMark();

  // On a small VM whose kernel is not preemptible, a kernel thread (kdamond here) can hold the event
  // loop's core for several ms; the loop's thread escapes to the other core only if that one is idle. Any
  // CPU-bound task keeps it busy, as a sweep does: this control tells the host's share from the sweep's.
  const hog = track(spawn('nice', ['-n', '19', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' }));
  let busyBaseline: ProbeResult;
  try {
    await new Promise((r) => setTimeout(r, 50));
    const busy = startProbe();
    await new Promise((r) => setTimeout(r, m1.wall - m0.wall));
    busyBaseline = await busy.stop();
  } finally {
    if (hog.pid !== undefined && hog.exitCode === null && hog.signalCode === null)
      process.kill(hog.pid, 'SIGKILL');
  }

  // The same sweeps with no probe: main-thread CPU per sweep then bounds the longest block of work the API
  // does on the event loop, however busy the host is.
  const cpu: number[] = [];
  for (let i = 0; i < STALL_SWEEPS; i++) {
    const before = mainThreadSched();
    check(await s.sampleAsync());
    cpu.push(mainThreadSched().cpu - before.cpu);
  }

  const getMs: number[] = [];
  const indexMs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const snap = await s.sampleAsync();
    for (const times of [getMs, indexMs]) {
      const t0 = performance.now();
      if (snap.get(pid) === undefined) oddities.push(`stall sweep: get(${pid}) is undefined`);
      times.push(performance.now() - t0);
    }
  }

  const t0 = performance.now();
  check(s.sample());
  const syncMs = performance.now() - t0;
  return {
    processes: expected,
    what: '',
    watchMs: 0,
    watchCpuMs: 0,
    sweeps: STALL_SWEEPS,
    steady,
    coldCpuMs: coldAfter.cpu - coldBefore.cpu,
    coldWaitMs: coldAfter.wait - coldBefore.wait,
    sweepMs: median(times),
    syncMs,
    baselineGapMs: baseline.gap,
    busyBaselineGapMs: busyBaseline.gap,
    foreignDuringSweeps: foreignCores(m0, m1),
    foreignDuringBaseline: foreignCores(m1, m2),
    getMedianMs: median(getMs),
    getMaxMs: Math.max(...getMs),
    indexMedianMs: median(indexMs),
    mainCpuMedianMs: median(cpu),
    mainCpuMaxMs: Math.max(...cpu),
    runqWaitMaxMs: Math.max(...wait),
  };
}

/** How many more tasks the host can take, from pid_max, threads-max and the pids cgroup. */
function taskHeadroom(): { headroom: number; detail: string } {
  const pidMax = readNumber('/proc/sys/kernel/pid_max') ?? 32768;
  const threadsMax = readNumber('/proc/sys/kernel/threads-max') ?? Number.POSITIVE_INFINITY;
  // /proc/loadavg's fourth field is runnable/total scheduling entities, i.e. threads holding a pid.
  const total = Number.parseInt(readText('/proc/loadavg')?.split(' ')[3]?.split('/')[1] ?? '0', 10);
  let cgroupRoom = Number.POSITIVE_INFINITY;
  for (const line of (readText('/proc/self/cgroup') ?? '').split('\n')) {
    const [, controllers, cgPath] = line.split(':');
    if (cgPath === undefined) continue;
    const dir =
      controllers === ''
        ? path.join('/sys/fs/cgroup', cgPath)
        : controllers?.split(',').includes('pids')
          ? path.join('/sys/fs/cgroup/pids', cgPath)
          : null;
    if (dir === null) continue;
    const max = readNumber(path.join(dir, 'pids.max'));
    const current = readNumber(path.join(dir, 'pids.current'));
    if (max !== null && current !== null) cgroupRoom = Math.min(cgroupRoom, max - current);
  }
  const headroom = Math.min(pidMax - total, threadsMax - total, cgroupRoom);
  return {
    headroom,
    detail: `pid_max ${pidMax}, threads-max ${threadsMax}, ${total} tasks running${Number.isFinite(cgroupRoom) ? `, pids cgroup room ${cgroupRoom}` : ''}`,
  };
}

async function stallTest(tripdump: Tripdump | { reason: string }): Promise<StallResult | string> {
  const { headroom, detail } = taskHeadroom();
  // Spare room for everything else on the host; each idle child also costs ~100 KiB of kernel memory.
  const memAvailKiB = Number.parseInt(
    /MemAvailable:\s+(\d+)/.exec(readText('/proc/meminfo') ?? '')?.[1] ?? '0',
    10,
  );
  const canSpawn = headroom >= STALL_PROCESSES + 2000 && memAvailKiB > STALL_PROCESSES * 1024;
  if (!canSpawn) {
    if (!('Sampler' in tripdump)) return `not measured: ${tripdump.reason}`;
    progress(`cannot spawn ${STALL_PROCESSES} (${detail}); sampling all host processes repeatedly instead`);
    const s = new tripdump.Sampler({ all: true, fields: STAT_FIELDS });
    try {
      const r = await measureStall(s, 0, process.pid);
      return { ...r, what: `fallback: Sampler({ all: true }) over the host's processes (${detail})` };
    } finally {
      s.close();
    }
  }
  progress(`spawning ${STALL_PROCESSES} idle processes (${detail})`);
  const group = await IdleGroup.start(STALL_PROCESSES);
  try {
    if (!('Sampler' in tripdump)) {
      return `not measured: ${tripdump.reason} (${STALL_PROCESSES.toLocaleString('en-US')} idle processes spawned in ${(group.spawnMs / 1000).toFixed(1)} s and reaped)`;
    }
    const s = new tripdump.Sampler({ fields: STAT_FIELDS });
    const t0 = performance.now();
    const c0 = mainThreadSched().cpu;
    const ids = await s.watchAsync(group.pids);
    const watchCpuMs = mainThreadSched().cpu - c0;
    const watchMs = performance.now() - t0;
    const failed = ids.filter((x) => x instanceof Error).length;
    if (failed) oddities.push(`watchAsync: ${failed} of ${group.pids.length} pids failed`);
    try {
      progress(`${STALL_SWEEPS} async sweeps of ${STALL_PROCESSES} processes`);
      const r = await measureStall(s, group.pids.length, group.pids[0]!);
      return { ...r, watchMs, watchCpuMs, what: 'idle processes spawned by the bench, stat fields' };
    } finally {
      s.close();
    }
  } finally {
    await group.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Output.

interface Row {
  reader: string;
  fields: string;
  us: number | null;
  /** Fastest round: less sensitive than the median to other work on a shared host. */
  min: number | null;
  ratio: string;
}

function fmtUs(us: number | null): string {
  return us === null || Number.isNaN(us) ? 'n/a' : us.toFixed(2);
}

function ratioText(us: number | null, base: number, suffix = ''): string {
  return us === null || Number.isNaN(us) ? '—' : `${(us / base).toFixed(2)}×${suffix}`;
}

function printTable(rows: readonly Row[]): void {
  const head = [
    'reader',
    'fields returned',
    'µs/process/sample: median (min)',
    'ratio vs C loop (same fields)',
  ];
  const cells = rows.map((r) => [
    r.reader,
    r.fields,
    `${fmtUs(r.us)}${r.min === null ? '' : ` (${fmtUs(r.min)})`}`,
    r.ratio,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]): string =>
    c.map((v, i) => (i === 2 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join(' | ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
  for (const c of cells) console.log(line(c));
}

function cpuModel(): string {
  const m = /^model name\s*:\s*(.+)$/m.exec(readText('/proc/cpuinfo') ?? '');
  return m?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
}

function printHeader(tripdumpState: string, psutilVersion: string): void {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  console.log('tripdump sampler benchmark');
  console.log(
    `machine:  ${cpuModel()}, ${os.availableParallelism()} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
  );
  console.log(`kernel:   ${os.release()}`);
  console.log(
    `load:     ${(readText('/proc/loadavg') ?? '').split(' ').slice(0, 3).join(' ')} (1/5/15-min load average at start)`,
  );
  console.log(`node:     ${process.version}`);
  console.log(`tripdump: ${pkg.version} (${tripdumpState})`);
  console.log(`pidusage: ${pidusageVersion()}`);
  console.log(`psutil:   ${psutilVersion}`);
  console.log(`ps:       ${firstLine(tryExec('ps', ['--version']) ?? 'not found')}`);
  console.log(`cc:       ${firstLine(tryExec('cc', ['--version']) ?? 'not found')}`);
  console.log('');
}

// ---------------------------------------------------------------------------------------------------------

function compileC(): void {
  mkdirSync(OUT_DIR, { recursive: true });
  for (const [src, out] of [
    ['ref_sampler.c', REF_SAMPLER],
    ['idle_target.c', IDLE_TARGET],
  ] as const) {
    execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-pthread', '-o', out, path.join(ROOT, 'bench', src)], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
  }
}

async function main(): Promise<void> {
  if (process.argv[2] === '--pidusage-worker') {
    await pidusageWorker();
    return;
  }
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    process.on(sig, () => {
      process.stderr.write(`\n${sig}: killing the processes the bench started\n`);
      killAllSync();
      process.exit(code);
    });
  }
  process.on('exit', killAllSync);

  compileC();
  const tripdump = await loadTripdump();
  const psutilProbe = tryExec(SYSTEM_PYTHON, [
    '-c',
    'import psutil, sys; print(psutil.__version__, sys.version.split()[0])',
  ]);
  printHeader(
    'Sampler' in tripdump
      ? `dist/index.js loaded; fd budget ${tripdump.fdBudget().limit.toLocaleString('en-US')} kept fds`
      : tripdump.reason,
    psutilProbe
      ? `${psutilProbe.split(' ')[0]} (${SYSTEM_PYTHON} ${psutilProbe.split(' ')[1]?.trim()})`
      : `not available for ${SYSTEM_PYTHON}`,
  );

  progress(`spawning ${PROCESSES} idle processes`);
  const group = await IdleGroup.start(PROCESSES);
  const pids = group.pids;
  progress(`spawned in ${group.spawnMs.toFixed(0)} ms`);

  // Rounds in µs/process, keyed by what was measured: C `${set} ${threads}`, tripdump
  // `${mode} ${set} ${threads}` (set: stat, ssi = stat+statm+io, full = ssi + fd count).
  const ref = new Map<string, number[]>();
  const td = new Map<string, number[]>();
  const tdNative = new Map<string, number[]>();
  const pool = (m: Map<string, number[]>, key: string): number[] => {
    const list = m.get(key) ?? [];
    m.set(key, list);
    return list;
  };
  let fdFromSize = false;
  let pidusageRes: PeerResult | string = {
    rounds_us: [],
    cpu_us: [],
    version: pidusageVersion(),
    returned: PROCESSES,
  };
  let passCpu = 0;
  let psutilRes: PeerResult | string;
  let psRes: PeerResult | string;
  // tripdump rows whose sampler failed once: later passes run their C rounds only.
  const broken = new Set<string>();
  const servers = new Map<string, RefServer>();
  // tripdump round ÷ the C round next to it, per `${mode} ${set} ${threads}`.
  const pairs = new Map<string, number[]>();
  try {
    // One sampler open at a time, made afresh for each pass: four samplers of 2,000 processes held together
    // keep 20,000 fds, past the fd budget where RLIMIT_NOFILE is 20,000 (as on this kind of host), and the
    // last one would read some of its files by path, which is not what its row measures.
    const openSampler = (set: 'stat' | 'full', threads: number): SamplerLike | null => {
      const key = `${set} ${threads}`;
      if (!('Sampler' in tripdump) || broken.has(key)) return null;
      const fields = set === 'stat' ? STAT_FIELDS : FULL_FIELDS;
      const before = tripdump.fdBudget();
      let s: SamplerLike | null = null;
      try {
        s = makeSampler(tripdump.Sampler, fields, pids, threads);
        checkRecord(s.sample(), pids[0]!, fields, `tripdump ${key}`);
        // stat alone keeps one fd per process; full keeps stat, statm, io and the fd directory.
        const want = pids.length * (set === 'stat' ? 1 : 4);
        const kept = tripdump.fdBudget().inUse - before.inUse;
        const why = `tripdump ${key}: ${want - kept} of ${want} files read by path (fd budget ${before.limit})`;
        if (kept < want && !oddities.includes(why)) oddities.push(why);
        return s;
      } catch (err) {
        s?.close();
        broken.add(key);
        oddities.push(`tripdump ${key} setup failed: ${message(err)}`);
        return null;
      }
    };
    const passStart = cpuMark();
    const C_FIELDS = { stat: 'stat', ssi: 'stat,statm,io', full: 'stat,statm,io,fd' } as const;
    for (const t of THREAD_COUNTS)
      for (const set of ['stat', 'full'] as const)
        servers.set(`${set} ${t}`, new RefServer(C_FIELDS[set], t, pids));
    // C alone, the base psutil's row is compared with.
    servers.set('ssi 1', new RefServer(C_FIELDS.ssi, 1, pids));
    // One C round and one tripdump round back to back, in alternating order; every pair gives a ratio.
    const pairedRounds = async (set: 'stat' | 'full', threads: number, pass: number): Promise<void> => {
      const key = `${set} ${threads}`;
      const c = servers.get(key)!;
      let s = openSampler(set, threads);
      try {
        for (const mode of ['sync', 'async'] as const) {
          const label = `tripdump ${mode} ${key}`;
          try {
            for (let i = 0; i < WARMUP && s; i++) await tripdumpRound(s, mode, pids, label);
            for (let i = 0; i < ROUNDS_PER_PASS; i++) {
              const cFirst = (i + pass) % 2 === 0;
              const before = cFirst ? await c.round() : null;
              const t = s ? await tripdumpRound(s, mode, pids, label) : null;
              const cUs = before ?? (await c.round());
              pool(ref, key).push(cUs);
              if (t === null) continue;
              pool(td, `${mode} ${key}`).push(t.us);
              pool(pairs, `${mode} ${key}`).push(t.us / cUs);
              if (t.nativeUs !== null) pool(tdNative, `${mode} ${key}`).push(t.nativeUs);
            }
          } catch (err) {
            if (!s) throw err;
            oddities.push(`tripdump ${key} sampling threw: ${message(err)}`);
            broken.add(key);
            s.close();
            s = null;
          }
        }
      } finally {
        s?.close();
      }
    };
    const pidusagePass = async (): Promise<void> => {
      if (typeof pidusageRes === 'string') return;
      try {
        const r = await runPidusage(pids, PIDUSAGE_ROUNDS_PER_PASS);
        pidusageRes.rounds_us.push(...r.rounds_us);
        pidusageRes.cpu_us?.push(...(r.cpu_us ?? []));
        if (r.returned !== PROCESSES) pidusageRes.returned = r.returned;
      } catch (err) {
        pidusageRes = message(err);
      }
    };
    for (let pass = 1; pass <= PASSES; pass++) {
      progress(`pass ${pass}/${PASSES}: C loop, tripdump and pidusage`);
      for (const set of ['stat', 'full'] as const) {
        for (const threads of THREAD_COUNTS) await pairedRounds(set, threads, pass);
        if (set === 'stat') {
          await pidusagePass();
          const ssi = servers.get('ssi 1')!;
          for (let i = 0; i < ROUNDS_PER_PASS; i++) pool(ref, 'ssi 1').push(await ssi.round());
        }
      }
    }
    for (const [key, server] of servers) {
      const r = await server.finish();
      if (r.failed > 0) oddities.push(`C loop ${key}: ${r.failed} process reads failed`);
      if (key.startsWith('full')) {
        fdFromSize = r.fd_count_from_size;
        if (r.first.fds !== 3)
          oddities.push(`C loop: first idle child reports ${String(r.first.fds)} fds, expected 3`);
      }
    }
    servers.clear();
    passCpu = foreignCores(passStart, cpuMark());

    progress('psutil');
    psutilRes = await runPsutil(pids).catch((err: unknown) => message(err));
    progress('ps');
    psRes = await runPs(pids).catch((err: unknown) => message(err));
  } finally {
    await Promise.allSettled([...servers.values()].map((c) => c.finish()));
    await group.stop();
  }

  const stall = await stallTest(tripdump);

  // ------------------------------------------------------------------ table
  const refRounds = (key: string): number[] => ref.get(key) ?? [];
  const cStat = median(refRounds('stat 1'));
  const cSsi = median(refRounds('ssi 1'));
  const tdAbsent = 'Sampler' in tripdump ? 'failed (see below)' : 'not built';
  const threadsText = (t: number): string => (t === 1 ? '1 thread' : `${t} threads`);
  // tripdump against the C loop on as many threads, same fields: median ratio and fastest-round ratio.
  const tdRatio = (
    mode: string,
    set: string,
    t: number,
  ): { us: number; min: number; r: number; q1: number; q3: number } | null => {
    const rounds = td.get(`${mode} ${set} ${t}`) ?? [];
    const ratios = [...(pairs.get(`${mode} ${set} ${t}`) ?? [])].sort((a, b) => a - b);
    if (rounds.length === 0 || ratios.length === 0) return null;
    const at = (q: number): number => ratios[Math.min(ratios.length - 1, Math.floor(q * ratios.length))]!;
    return { us: median(rounds), min: Math.min(...rounds), r: median(ratios), q1: at(0.25), q3: at(0.75) };
  };
  const SET_TEXT = { stat: 'S (stat)', full: 'F (stat+statm+io+fds)' } as const;
  const rows: Row[] = [];
  for (const t of THREAD_COUNTS) {
    for (const set of ['stat', 'ssi', 'full'] as const) {
      const rounds = refRounds(`${set} ${t}`);
      if (rounds.length === 0) continue;
      const fields = {
        stat: 'S (stat)',
        ssi: 'stat + statm(7) + io(7)',
        full: 'stat + statm(7) + io(7) + fd count',
      }[set];
      rows.push({
        reader: `C kept-fd loop, ${threadsText(t)}`,
        fields,
        us: median(rounds),
        min: Math.min(...rounds),
        ratio: '1.00×',
      });
    }
  }
  for (const t of THREAD_COUNTS) {
    for (const set of ['stat', 'full'] as const) {
      for (const mode of ['sync', 'async'] as const) {
        const reader = `tripdump ${mode === 'sync' ? 'sample()' : 'sampleAsync()'}, ${threadsText(t)}`;
        const r = tdRatio(mode, set, t);
        rows.push(
          r === null
            ? { reader, fields: SET_TEXT[set], us: null, min: null, ratio: tdAbsent }
            : {
                reader,
                fields: SET_TEXT[set],
                us: r.us,
                min: r.min,
                ratio: `${r.r.toFixed(2)}× (IQR ${r.q1.toFixed(2)}–${r.q3.toFixed(2)}) vs C, ${threadsText(t)}`,
              },
        );
      }
    }
  }
  const peerRow = (
    reader: string,
    fields: string,
    res: PeerResult | string,
    base: number,
    baseName: string,
  ): Row => {
    if (typeof res === 'string') return { reader, fields, us: null, min: null, ratio: `skipped: ${res}` };
    if (res.error !== undefined)
      return { reader, fields, us: null, min: null, ratio: `skipped: ${res.error}` };
    if (res.returned !== undefined && res.returned !== PROCESSES) {
      oddities.push(`${reader} returned ${res.returned} of ${PROCESSES} processes`);
    }
    const us = median(res.rounds_us);
    const min = Math.min(...res.rounds_us);
    return { reader, fields, us, min, ratio: ratioText(us, base, ` (vs ${baseName}, not same fields)`) };
  };
  rows.push(
    peerRow(
      `pidusage ${typeof pidusageRes === 'string' ? '' : pidusageRes.version}`.trim(),
      'cpu% memory ppid ctime elapsed (stat only)',
      pidusageRes,
      cStat,
      'C stat, 1 thread',
    ),
    peerRow(
      `psutil ${typeof psutilRes === 'string' || psutilRes.error ? '' : psutilRes.version.split(' ')[0]}`.trim(),
      'cpu_times memory_info num_threads',
      psutilRes,
      cSsi,
      'C stat+statm+io, 1 thread',
    ),
    peerRow('ps -p <2,000 pids>', 'pid rss vsz pcpu nlwp', psRes, cStat, 'C stat, 1 thread'),
  );

  console.log(
    `Sampler: ${PROCESSES.toLocaleString('en-US')} idle processes (spawned by the bench, 1 thread and 3 fds each); median of pooled rounds`,
  );
  console.log('');
  printTable(rows);
  console.log('');
  console.log(
    'S = pid comm state ppid pgrp minflt majflt utime stime threads starttime vsize rss (13, one pread of stat).',
  );
  console.log(
    'F = S + shared text data (statm) + read_bytes write_bytes rchar wchar (io) + fd count (21); the C loop reads the',
  );
  console.log(
    `    same files and parses all 7 statm and 7 io values; fd count = fstat(/proc/PID/fd).st_size${fdFromSize ? '' : ' (fallback: getdents64, st_size was 0)'}.`,
  );
  console.log(
    `C: one ref_sampler process per field set and thread count, fds kept for the whole run, rounds served one at a time (${WARMUP} warm-up); rounds parse every file every time; on N threads the pids are cut into N equal slices.`,
  );
  console.log(
    `tripdump: timed = sample() returning / sampleAsync() resolving, plus snap.length and one snap.get(pid); ${PASSES} passes × ${ROUNDS_PER_PASS} rounds per mode after ${WARMUP} warm-up, fds kept across rounds; each round is paired with a C round of the same fields and threads taken right before or after it (order alternating), and the ratio column is the median of the pairs' ratios with its interquartile range; Sampler({ sweepThreads }) with ${THREAD_COUNTS.join(' and ')} (${THREADS} is the default here: the cores, at most 4).`,
  );
  if (tdNative.size > 0) {
    const parts = [...tdNative].map(([k, r]) => `${k} ${fmtUs(median(r))}`);
    console.log(
      `tripdump's native sweep alone (snap.durationMs), median µs/process: ${parts.join(', ')}; the rest of each row is JS, N-API and, for async, the hand-off to the worker thread and back.`,
    );
  }
  console.log(
    `pidusage(pids[]): own node process per pass, ${PASSES} × ${PIDUSAGE_ROUNDS_PER_PASS} rounds after ${PEER_WARMUP} warm-up, cache kept between rounds (its steady state: one kept fd per pid; clear() would drop those fds without closing them). Its reads run on 4 libuv threads: CPU time ${typeof pidusageRes === 'string' ? 'n/a' : fmtUs(median(pidusageRes.cpu_us ?? []))} µs/process against the wall time in the table.`,
  );
  console.log(
    `psutil: Process objects made once; per round and process oneshot() + cpu_times() memory_info() num_threads() (reads stat, statm, status); timed inside python, ${PEER_ROUNDS} rounds after ${PEER_WARMUP} warm-up.`,
  );
  console.log(
    `ps: \`ps -o pid,rss,vsz,pcpu,nlwp -p <the 2,000 pids>\`, wall time incl. process start divided by 2,000, median of ${PS_ROUNDS}.`,
  );
  console.log(
    `Other processes on the host used ${passCpu.toFixed(2)} of ${os.availableParallelism()} cores during the C/tripdump/pidusage passes${passCpu > 0.2 ? ' (busy host: expect noisy figures)' : ''}.`,
  );
  console.log('');

  // ------------------------------------------------------------------ stall
  let stall5: StallResult | null = null;
  if (typeof stall === 'string') {
    console.log(
      `Event-loop stall, sampleAsync over ${STALL_PROCESSES.toLocaleString('en-US')} processes: ${stall}`,
    );
  } else {
    stall5 = stall;
    const n = stall.processes > 0 ? stall.processes.toLocaleString('en-US') : 'all host';
    console.log(
      `Event-loop stall, sampleAsync over ${n} processes (${stall.what}, default ${threadsText(THREADS)} per sweep), ${stall.sweeps} back-to-back sweeps:`,
    );
    console.log(
      `  longest gap between 1 ms probe ticks: ${stall.steady.gap.toFixed(2)} ms (monitorEventLoopDelay max ${stall.steady.eld.toFixed(2)} ms); both include the 1 ms period and all main-thread work: native completion, promise resolution, snap.length`,
    );
    console.log(
      `  of which: longest gap containing a resolve ${stall.steady.gapAtResolve.toFixed(2)} ms, longest gap with no resolve in it ${stall.steady.gapElsewhere.toFixed(2)} ms`,
    );
    console.log(
      `  main thread on-CPU per sweep in ${stall.sweeps} more sweeps without the probe (bounds any block of API work): median ${stall.mainCpuMedianMs.toFixed(2)} ms, max ${stall.mainCpuMaxMs.toFixed(2)} ms; during the probed sweeps it was runnable but waiting for a core up to ${stall.runqWaitMaxMs.toFixed(2)} ms per sweep`,
    );
    console.log(
      `  control, same probe for the same time with no sweep running: ${stall.baselineGapMs.toFixed(2)} ms; other processes used ${stall.foreignDuringSweeps.toFixed(2)} cores during the sweeps, ${stall.foreignDuringBaseline.toFixed(2)} during the control`,
    );
    console.log(
      `  control with a nice-19 shell busy loop instead of the sweeps (any CPU-bound task on the host): ${stall.busyBaselineGapMs.toFixed(2)} ms`,
    );
    console.log(
      `  a sweep takes ${stall.sweepMs.toFixed(1)} ms on the worker; a sync sample() of the same set blocks for ${stall.syncMs.toFixed(1)} ms`,
    );
    console.log(
      `  set-up, not in the figures above: watchAsync() of ${n} pids ${stall.watchMs.toFixed(1)} ms on the sampler's thread, ${stall.watchCpuMs.toFixed(2)} ms of main-thread CPU; first sweep (every pid in started[]) ${stall.coldCpuMs.toFixed(2)} ms of main-thread CPU (${stall.coldWaitMs.toFixed(2)} ms waiting for a core)`,
    );
    console.log(
      `  first snap.get(pid) on a fresh ${n}-row snapshot (scans the pid column; not inside the gaps above): median ${stall.getMedianMs.toFixed(3)} ms, max ${stall.getMaxMs.toFixed(3)} ms; the second builds the pid → row index: median ${stall.indexMedianMs.toFixed(2)} ms`,
    );
  }
  console.log('');

  // ------------------------------------------------------------------ verdicts
  const verdict = (ok: boolean | null, text: string): void => {
    console.log(`${(ok === null ? 'NOT MEASURED' : ok ? 'met' : 'NOT MET').padEnd(12)}  ${text}`);
  };
  const tdRatios = THREAD_COUNTS.flatMap((t) =>
    (['stat', 'full'] as const).flatMap((set) =>
      (['sync', 'async'] as const).map((mode) => ({
        name: `${mode} ${set === 'stat' ? 'S' : 'F'} ${t}t`,
        r: tdRatio(mode, set, t),
      })),
    ),
  );
  const measured = tdRatios.filter((x) => x.r !== null);
  verdict(
    measured.length === tdRatios.length ? measured.every((x) => x.r!.r <= RATIO_TARGET) : null,
    `tripdump ≤ ${RATIO_TARGET}× the C loop, same fields and threads, median of paired rounds: ${measured.length > 0 ? measured.map((x) => `${x.name} ${x.r!.r.toFixed(2)}×`).join(', ') : 'no tripdump rows'}`,
  );
  const pidusageUs = typeof pidusageRes === 'string' ? null : median(pidusageRes.rounds_us);
  // The slower of sync and async, with the default thread count and with one thread.
  const slowerStat = (t: number): number | null => {
    const rs = [tdRatio('sync', 'stat', t), tdRatio('async', 'stat', t)];
    return rs.every((r) => r !== null) ? Math.max(...rs.map((r) => r!.us)) : null;
  };
  const tdDefault = slowerStat(THREADS);
  const tdOne = slowerStat(1);
  const speedup = pidusageUs !== null && tdDefault !== null ? pidusageUs / tdDefault : null;
  verdict(
    speedup === null ? null : speedup >= PIDUSAGE_TARGET,
    `tripdump ≥ ${PIDUSAGE_TARGET}× faster per process than pidusage (13 stat fields vs its 5 values; slower of sync/async; default ${threadsText(THREADS)} against pidusage's 4 libuv threads): ${speedup === null ? 'n/a' : `${speedup.toFixed(2)}×`}${THREADS > 1 && pidusageUs !== null && tdOne !== null ? `; on 1 thread ${(pidusageUs / tdOne).toFixed(2)}×` : ''}`,
  );
  if (stall5 !== null && stall5.coldCpuMs > STALL_TARGET_MS) {
    oddities.push(
      `the first sampleAsync() after watching ${stall5.processes.toLocaleString('en-US')} pids used ${stall5.coldCpuMs.toFixed(2)} ms of main-thread CPU (steady sweeps: ${stall5.mainCpuMedianMs.toFixed(2)} ms); its completion returns every pid in started[], built on the main thread`,
    );
  }
  if (stall5 !== null && stall5.watchCpuMs > STALL_TARGET_MS) {
    oddities.push(
      `watchAsync() of ${stall5.processes.toLocaleString('en-US')} pids used ${stall5.watchCpuMs.toFixed(1)} ms of main-thread CPU`,
    );
  }
  const stallNote =
    stall5 === null || stall5.steady.gap <= STALL_TARGET_MS
      ? ''
      : stall5.mainCpuMaxMs <= STALL_TARGET_MS
        ? ` (but the main thread was on-CPU at most ${stall5.mainCpuMaxMs.toFixed(2)} ms per sweep and waited for a core up to ${stall5.runqWaitMaxMs.toFixed(2)} ms; the control without sweeps reaches ${stall5.baselineGapMs.toFixed(2)} ms, and ${stall5.busyBaselineGapMs.toFixed(2)} ms with a nice-19 busy loop: host contention, rerun on an idle host)`
        : ` (the main thread was on-CPU up to ${stall5.mainCpuMaxMs.toFixed(2)} ms in one sweep)`;
  verdict(
    stall5 === null ? null : stall5.steady.gap <= STALL_TARGET_MS,
    `no event-loop stall above ${STALL_TARGET_MS} ms over ${STALL_PROCESSES.toLocaleString('en-US')} processes: ${stall5 === null ? 'n/a' : `${stall5.steady.gap.toFixed(2)} ms${stallNote}`}`,
  );

  if (oddities.length > 0) {
    console.log('');
    console.log('Odd:');
    for (const o of oddities) console.log(`  - ${o}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  killAllSync();
  process.exitCode = 1;
});
