// The public Sampler: a native ProcessTable plus field selection, snapshot validity and async sweeps.
import { availableParallelism } from 'node:os';
import { fromNative, native, UsageError } from '../errors.js';
import { binding, type NativeBinding, type NativeSampler, type NativeSweep } from '../native.js';
import { DEFAULT_FIELDS, FIELD_INFO, FIELD_NAMES, type FieldName } from './fields.js';
import { ColumnViews, type ProcessIdentity, Snapshot } from './snapshot.js';

export interface SamplerOptions {
  /** Fields to sample: names from FIELD_NAMES, or 'all'. Default: the fields of /proc/PID/stat. */
  fields?: readonly FieldName[] | 'all';
  /** Sample every process on the host, discovering new ones each sweep. */
  all?: boolean;
  /** Default for watch(): also sample children (and their children) of watched processes. */
  children?: boolean;
  /** Default for watch(): also sample each thread of watched processes, as rows of their own. */
  threads?: boolean;
  /** Add host CPU, memory and load (/proc/stat, /proc/meminfo, /proc/loadavg) to every snapshot. */
  host?: boolean;
  /**
   * Column blocks in rotation (≥ 2, default 2): a snapshot stays readable until `keep` more sweeps have
   * started, and sampleUntil() returns up to `keep - 1` snapshots. Each block costs ~270 bytes per row.
   */
  keep?: number;
  /**
   * Threads one sweep is shared across, the sampler's own included (1 to 64; default: the number of
   * cores, at most 4). Only sweeps of 128 processes or more are split. The helpers are SCHED_IDLE: they
   * use cores nothing else wants, and the event loop (or any other task) preempts them at once.
   */
  sweepThreads?: number;
}

/**
 * A reason for sampleUntil() to return: `field` of `pid` at or above (`above: true`) or below `value`,
 * in the field's own unit; `field: 'always'` is met by every sweep.
 */
export interface WakeCondition {
  pid: number;
  field: FieldName | 'always';
  above: boolean;
  value: number;
}

export interface SampleUntilOptions {
  /** Time between sweep starts, ms. */
  intervalMs: number;
  /** Return after the first sweep this long after the call, ms. Default: no deadline. */
  waitMs?: number;
  conditions?: readonly WakeCondition[];
}

export interface WatchOptions {
  children?: boolean;
  threads?: boolean;
}

/** Checks a field list, naming the first bad entry. */
export function parseFields(fields: readonly string[] | 'all' | undefined): FieldName[] {
  if (fields === undefined) return [...DEFAULT_FIELDS];
  if (fields === 'all') return [...FIELD_NAMES];
  if (!Array.isArray(fields) || fields.length === 0)
    throw new UsageError(`fields must be a non-empty list of field names or 'all'`, 'fields');
  for (const f of fields)
    if (!Object.hasOwn(FIELD_INFO, f))
      throw new UsageError(`unknown field '${f}' (known: ${FIELD_NAMES.join(', ')})`, 'fields');
  // pid is the row key: always there.
  return FIELD_NAMES.filter((f) => f === 'pid' || fields.includes(f));
}

/** The kernel's PID_MAX_LIMIT: no pid (or tid) is larger. */
export const PID_MAX_LIMIT = 4_194_304;

export function checkPid(pid: unknown, what = 'pid'): number {
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0 || pid > PID_MAX_LIMIT)
    throw new UsageError(`${what} must be a positive integer ≤ ${PID_MAX_LIMIT}, got ${String(pid)}`, what);
  return pid;
}

/** Pids watched (or unwatched) that no snapshot reflects yet, each with the first sweep that can. */
class Pending {
  #at = new Map<number, number>();
  #latest = 0;
  set(pid: number, at: number): void {
    this.#at.set(pid, at);
    this.#latest = Math.max(this.#latest, at);
  }
  has(pid: number): boolean {
    return this.#at.has(pid);
  }
  delete(pid: number): void {
    this.#at.delete(pid);
  }
  /** Sweep `gen` took in everything made before it started; later ones stay pending. */
  settle(gen: number): void {
    // Usually all of them: clearing is O(1) where a pass over 10,000 pids would hold the event loop.
    if (this.#latest <= gen) this.#at.clear();
    else for (const [pid, at] of this.#at) if (at <= gen) this.#at.delete(pid);
  }
}

/**
 * The process-wide budget of /proc fds the samplers keep open: `limit` (RLIMIT_NOFILE, raised to its hard
 * limit, less 512 left for the host program) and how many are held now. Past the limit a sampler reads the
 * remaining files by path (open, read, close), which costs about twice as much per process.
 */
export function fdBudget(): { limit: number; inUse: number } {
  return binding().fdBudget();
}

export class Sampler {
  readonly fields: readonly FieldName[];
  #binding: NativeBinding;
  #native: NativeSampler;
  #options: SamplerOptions;
  #views: ColumnViews[] = [];
  #keep: number;
  /** Native generation of the next sweep to start, as far as this side knows. */
  #next = 0;
  /** A sampleUntil() is sweeping: any number of sweeps may start before it returns. */
  #waiting = false;
  #inFlight: Promise<unknown> | undefined;
  #closed = false;
  /**
   * For unwatch()'s answer: pids watched, and pids unwatched, that the latest snapshot does not reflect
   * yet, each with the number of sweeps started when it happened (a sweep takes in what came before it).
   */
  #pending = new Pending();
  #unwatched = new Pending();
  #latest: Snapshot | undefined;

  constructor(options: SamplerOptions = {}) {
    this.fields = parseFields(options.fields);
    this.#options = options;
    const keep = options.keep ?? 2;
    if (!Number.isInteger(keep) || keep < 2 || keep > 10_000)
      throw new UsageError(`keep must be an integer from 2 to 10000, got ${String(keep)}`, 'keep');
    this.#keep = keep;
    const sweepThreads = options.sweepThreads ?? Math.min(4, availableParallelism());
    if (!Number.isInteger(sweepThreads) || sweepThreads < 1 || sweepThreads > 64)
      throw new UsageError(
        `sweepThreads must be an integer from 1 to 64, got ${String(options.sweepThreads)}`,
        'sweepThreads',
      );
    this.#binding = binding();
    let mask = 0;
    for (const f of this.fields) mask |= 1 << FIELD_NAMES.indexOf(f);
    this.#native = native(
      () =>
        new this.#binding.NativeSampler({
          fields: mask >>> 0,
          all: options.all === true,
          children: options.children === true,
          threads: options.threads === true,
          host: options.host === true,
          keep,
          sweepThreads,
        }),
    );
  }

  /** Processes (and thread rows) in the last sweep. */
  get size(): number {
    return this.#native.size;
  }

  /**
   * Starts sampling a process. Its files are opened now, so a pid that does not exist throws
   * ProcessGoneError here; it appears in the next snapshot (in `started`).
   */
  watch(pid: number, options: WatchOptions = {}): ProcessIdentity {
    this.#open();
    checkPid(pid);
    const id = native(() =>
      this.#native.watch(pid, {
        children: options.children ?? this.#options.children === true,
        threads: options.threads ?? this.#options.threads === true,
      }),
    );
    this.#pending.set(pid, this.#next);
    this.#unwatched.delete(pid);
    return id;
  }

  /**
   * watch() for many pids, on the sampler's thread: opening 10,000 processes' files takes a quarter of a
   * second, which the event loop should not spend. Resolves, in the order given, with each identity or the
   * typed error for that pid (ProcessGoneError when it does not exist); bad pids throw at once.
   */
  async watchAsync(
    pids: readonly number[],
    options: WatchOptions = {},
  ): Promise<(ProcessIdentity | Error)[]> {
    this.#open();
    const list = new Int32Array(pids.length);
    for (let i = 0; i < pids.length; i++) list[i] = checkPid(pids[i]);
    const { ids, errors } = await this.#queue(() =>
      this.#native.watchAsync(list, {
        children: options.children ?? this.#options.children === true,
        threads: options.threads ?? this.#options.threads === true,
      }),
    );
    const at = this.#next;
    const out: (ProcessIdentity | Error)[] = new Array(list.length);
    for (let i = 0; i < errors.length; i += 2) out[errors[i] as number] = fromNative(errors[i + 1]) as Error;
    // In slices with a turn of the event loop between them: 10,000 records in one go would be a stall.
    for (let from = 0; from < list.length; from += 1024) {
      if (from > 0) await new Promise((r) => setImmediate(r));
      for (let i = from; i < Math.min(from + 1024, list.length); i++) {
        const startTime = ids[i * 2 + 1]!;
        if (Number.isNaN(startTime)) continue;
        const pid = list[i]!;
        out[i] = { pid, startTime };
        this.#pending.set(pid, at);
        this.#unwatched.delete(pid);
      }
    }
    return out;
  }

  /**
   * Stops sampling a process (and its thread rows) from the next sweep on. Returns whether it was being
   * watched: a row of the latest snapshot, or watched since, and not unwatched already.
   */
  unwatch(pid: number): boolean {
    this.#open();
    checkPid(pid);
    const was =
      this.#pending.has(pid) || ((this.#latest?.rowOf(pid) ?? -1) >= 0 && !this.#unwatched.has(pid));
    this.#pending.delete(pid);
    if (was) {
      this.#unwatched.set(pid, this.#next);
      this.#native.unwatch(pid);
    }
    return was;
  }

  /** One sweep on the calling thread: for small sets. */
  sample(): Snapshot {
    this.#open();
    if (this.#inFlight)
      throw new UsageError('sample() called while sampleAsync() is running; await it first');
    this.#next++;
    return this.#snapshot(native(() => this.#native.sample()));
  }

  /** One sweep on a native worker thread: the event loop stays free however many processes are watched. */
  sampleAsync(): Promise<Snapshot> {
    this.#open();
    return this.#queue(async () => {
      this.#next++;
      return this.#snapshot(await this.#native.sampleAsync());
    });
  }

  /**
   * Sweeps on the sampler's thread (the first sweep at once, or one interval after the previous
   * sampleUntil() sweep), then every `intervalMs`, until a sweep has news: a row started or exited, a
   * condition is met, `waitMs` has passed, or wake() was called. Resolves with the snapshots of the sweeps
   * made, oldest first: the latest `keep - 1` of them (none when woken before the first). A monitor awaits
   * this instead of a timer: its event loop sleeps through every poll that has nothing to report.
   */
  sampleUntil(options: SampleUntilOptions): Promise<Snapshot[]> {
    this.#open();
    const { intervalMs, waitMs = Number.POSITIVE_INFINITY, conditions = [] } = options;
    if (!Number.isFinite(intervalMs) || intervalMs < 0)
      throw new UsageError(`intervalMs must be a finite number ≥ 0, got ${intervalMs}`, 'intervalMs');
    if (Number.isNaN(waitMs) || waitMs < 0)
      throw new UsageError(`waitMs must be ≥ 0, got ${waitMs}`, 'waitMs');
    const quads = new Float64Array(conditions.length * 4);
    conditions.forEach((c, i) => {
      const field = c.field === 'always' ? -1 : FIELD_NAMES.indexOf(c.field);
      if (field < 0 && c.field !== 'always') throw new UsageError(`unknown field '${c.field}'`, 'conditions');
      quads.set([checkPid(c.pid), field, c.above ? 1 : 0, c.value], i * 4);
    });
    return this.#queue(async () => {
      this.#waiting = true;
      let sweeps: NativeSweep[];
      try {
        sweeps = await this.#native.sampleUntil(intervalMs, waitMs, quads, this.#keep - 1);
      } finally {
        this.#waiting = false;
      }
      const last = sweeps.at(-1);
      if (last) this.#next = last.generation + 1;
      return sweeps.map((s) => this.#snapshot(s));
    });
  }

  /** Ends a sampleUntil() now (or the next one at once, if none is running). */
  wake(): void {
    if (!this.#closed) this.#native.wake();
  }

  /** Runs native jobs one after another, in call order. */
  #queue<T>(run: () => Promise<T>): Promise<T> {
    // A sampleUntil() in flight would hold the sampler's thread until it has news: end it first.
    if (this.#waiting) this.#native.wake();
    const guarded = async (): Promise<T> => {
      try {
        return await run();
      } catch (e) {
        throw fromNative(e);
      }
    };
    const previous = this.#inFlight;
    const p = (previous ? previous.then(guarded, guarded) : guarded()).finally(() => {
      if (this.#inFlight === p) this.#inFlight = undefined;
    });
    this.#inFlight = p;
    return p;
  }

  /** Releases every fd (at the end of a sweep in flight, if any). Further calls throw. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#native.close();
  }

  get closed(): boolean {
    return this.#closed;
  }

  #open(): void {
    if (this.#closed) throw new UsageError('the sampler is closed');
  }

  #snapshot(sweep: NativeSweep): Snapshot {
    let views = this.#views.find((v) => v.buffer === sweep.buffer);
    if (!views) {
      views = new ColumnViews(
        sweep.buffer,
        sweep.capacity,
        this.#binding.layout(sweep.capacity),
        this.#binding.commMax,
      );
      // The table rotates through `keep` blocks; older views belong to blocks it no longer uses.
      this.#views = [views, ...this.#views].slice(0, this.#keep);
    }
    const gen = sweep.generation;
    // Block `gen` is rewritten by sweep gen + keep.
    const snap = new Snapshot(
      sweep,
      views,
      this.fields,
      this.#binding.commMax,
      () => !this.#waiting && this.#next <= gen + this.#keep,
    );
    this.#pending.settle(gen);
    this.#unwatched.settle(gen);
    this.#latest = snap;
    return snap;
  }
}
