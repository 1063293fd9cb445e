// ProcDump 3.x's .NET triggers, from outside: -gcm (GC heap thresholds), -gcgen (a collection of a
// generation), -e/-f (first-chance exceptions), -pc/-pcl (any EventCounter or Metrics instrument). ProcDump
// injects a profiler for the first three; tripdump subscribes to the target's EventPipe session over the
// diagnostics socket (one session per target, shared: connection.ts) and nothing is loaded into the target.
// They are event-driven triggers behind the Trigger interface: the monitor owns -n, -s, --for and Ctrl-C.
import { UsageError } from '../../errors.js';
import type { FieldName } from '../../sampler/fields.js';
import type { FireFn, Judgement, Trigger, TriggerState, TriggerTag } from '../../triggers/trigger.js';
import { dotnetConnections } from './connection.js';
import type { Provider } from './eventpipe.js';
import {
  type CounterValue,
  counterEvent,
  METRICS_PROVIDER,
  RUNTIME_PROVIDER,
  RuntimeKeyword,
  runtimeEvent,
} from './events.js';
import type { TraceEvent } from './nettrace.js';

const INFORMATIONAL = 4;
/** Discrete events waiting behind dumps beyond this many are dropped: a burst no dump rate could serve. */
const MAX_QUEUED = 1000;
/** How long a trigger that arms on its first reading (-gcm) waits for one after the session starts. */
const FIRST_READING_MS = 3000;

/** What a trigger makes of one event. */
interface Verdict {
  /**
   * The judgement, made when the event's turn comes: after the dumps of the events before it, so that a
   * threshold list advances per event.
   */
  judge(w: Watch): { judgement: Judgement; reason: string } | undefined;
  /**
   * A reading of a level (a counter's value): never waits behind a dump; a newer one of the same series
   * (this key: a Metrics instrument's tags) replaces it while it waits for its turn.
   */
  level?: string;
  /** A measurement of what the trigger judges (-gcm: the heap's size): it is armed once it has one. */
  reading?: boolean;
}

/** Per-target state of one subscription. */
interface Watch {
  /** Firings the monitor acted on. */
  fired: number;
  metricsSession: string;
}

abstract class DotnetTrigger implements Trigger {
  abstract readonly tag: TriggerTag;
  abstract readonly setting: readonly [string, string];
  readonly fields: readonly FieldName[] = [];
  /** Armed at its first reading rather than when the session starts (a level must be known first). */
  protected readonly armsOnReading: boolean = false;
  abstract limit(state: TriggerState): number;
  abstract describe(j: Judgement): string;
  /** What the target's session must carry for this trigger. */
  abstract providers(metricsSession: string, metricsClient: string): Provider[];
  /** What one event of the target's session means to this trigger. */
  protected abstract onEvent(e: TraceEvent, pid: number, w: Watch): Verdict | undefined;

  async subscribe(pid: number, fire: FireFn, signal: AbortSignal, armed: () => void): Promise<void> {
    const lease = await dotnetConnections.acquire(pid, signal);
    const conn = lease.connection;
    const w: Watch = { fired: 0, metricsSession: conn.metricsSession };
    let stop = () => {};
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        // Events are judged one after the other, each once the firings before it are over: none is lost
        // while a dump is written (the monitor holds a queued one until the cooldown has passed).
        let queue = Promise.resolve();
        let queued = 0;
        const levels = new Map<string, Verdict>();
        let running = false;
        let failed = false;
        const fail = (e: unknown) => {
          if (failed) return;
          failed = true;
          unsubscribe();
          reject(e);
        };
        const run = async (v: Verdict) => {
          const r = v.judge(w);
          if (!r) return;
          const acted = await fire(r.judgement, r.reason, undefined, { queue: v.level === undefined });
          if (acted) w.fired++;
        };
        const unsubscribe = conn.subscribe(this.providers(conn.metricsSession, conn.metricsClient), {
          onStart: () => {
            running = true;
            if (!this.armsOnReading) armed();
            // A runtime that publishes no counters still gets its heap judged at the next collection.
            else timer = setTimeout(armed, FIRST_READING_MS);
          },
          onEvent: (e) => {
            let v: Verdict | undefined;
            try {
              v = this.onEvent(e, pid, w);
            } catch (err) {
              fail(err);
              return;
            }
            if (!v) return;
            if (v.reading && running) armed();
            const verdict = v;
            const key = verdict.level;
            if (key !== undefined) {
              const pending = levels.has(key);
              levels.set(key, verdict);
              if (pending) return;
            } else if (queued >= MAX_QUEUED) return;
            else queued++;
            queue = queue
              .then(() => {
                if (key === undefined) {
                  queued--;
                  return run(verdict);
                }
                const latest = levels.get(key);
                levels.delete(key);
                return latest && run(latest);
              })
              .catch(fail);
          },
          onEnd: (error) => {
            if (error) fail(error);
            else resolve();
          },
        });
        stop = () => {
          unsubscribe();
          resolve();
        };
        // The signal may have aborted while the connection was opening.
        if (signal.aborted) stop();
        else signal.addEventListener('abort', stop, { once: true });
      });
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', stop);
      await lease.release();
    }
  }
}

export type GcHeap = 'total' | 0 | 1 | 2 | 'loh' | 'poh';
const HEAP_INDEX: Record<Exclude<GcHeap, 'total'>, number> = { 0: 0, 1: 1, 2: 2, loh: 3, poh: 4 };

/** Parses -gcm's value: `[gen0:|gen1:|gen2:|0:|1:|2:|LOH:|POH:]MB[,MB…]`. */
export function parseGcm(value: string): { heap: GcHeap; thresholdsMB: number[] } {
  const colon = value.indexOf(':');
  let heap: GcHeap = 'total';
  let list = value;
  if (colon >= 0) {
    const h = value.slice(0, colon).trim().toLowerCase().replace(/^gen/, '');
    list = value.slice(colon + 1);
    if (h === '0' || h === '1' || h === '2') heap = Number(h) as 0 | 1 | 2;
    else if (h === 'loh' || h === 'poh') heap = h;
    else
      throw new UsageError(
        `-gcm: unknown generation or heap '${value.slice(0, colon)}' (gen0, gen1, gen2, LOH or POH)`,
        '-gcm',
      );
  }
  // Numbers padded with blanks are refused, as everywhere else a number is typed.
  const parts = list.split(',');
  if (parts.some((p) => !/^\d+(\.\d+)?$/.test(p)))
    throw new UsageError(`-gcm needs [GEN:]MB[,MB...], got '${value}'`, '-gcm');
  return { heap, thresholdsMB: parts.map(Number) };
}

function heapName(h: GcHeap): string {
  return h === 'total' ? 'total' : typeof h === 'number' ? `gen${h}` : h.toUpperCase();
}

/** The System.Runtime EventCounter that reads each heap (gc-heap-size in decimal MB, the others in bytes). */
const HEAP_COUNTER: Record<string, string> = {
  total: 'gc-heap-size',
  0: 'gen-0-size',
  1: 'gen-1-size',
  2: 'gen-2-size',
  loh: 'loh-size',
  poh: 'poh-size',
};

/**
 * -gcm: the managed heap (total, or one generation) is at or above each threshold in turn, one dump per
 * threshold, each collection judged in turn. Two readings: the generation sizes the runtime reports at the
 * end of every collection (GCHeapStats, when ProcDump's profiler measures), and the System.Runtime
 * counters every second. A heap that grew after the last collection and then stopped (no collection comes)
 * is seen by the total's counter (GC.GetTotalMemory: what was allocated since counts); a generation's
 * counter gives its size at the last collection. The trigger is armed at its first reading, so a heap
 * already above the threshold fires at once.
 */
export class GcMemoryTrigger extends DotnetTrigger {
  readonly tag = 'gc_size' as const;
  readonly setting: readonly [string, string];
  readonly sustain = true;
  protected override readonly armsOnReading = true;
  constructor(
    readonly heap: GcHeap,
    readonly thresholdsMB: readonly number[],
  ) {
    super();
    if (thresholdsMB.length === 0) throw new UsageError('-gcm needs a threshold', '-gcm');
    this.setting = [
      '.NET Memory Threshold:',
      `>= ${thresholdsMB.map((t) => `${t} MB`).join(',')} (${heapName(heap)})`,
    ];
  }
  limit(state: TriggerState): number {
    return this.thresholdsMB.length - state.fired;
  }
  providers(): Provider[] {
    return [
      { name: RUNTIME_PROVIDER, keywords: RuntimeKeyword.gc, level: INFORMATIONAL },
      { name: 'System.Runtime', keywords: 0n, level: INFORMATIONAL, args: { EventCounterIntervalSec: '1' } },
    ];
  }
  describe(j: Judgement): string {
    return `.NET ${heapName(this.heap)} heap ${j.value.toFixed(1)} MB >= ${j.threshold} MB`;
  }
  #judge(w: Watch, bytes: number, details: Record<string, unknown>) {
    const threshold = this.thresholdsMB[w.fired];
    if (threshold === undefined) return undefined;
    const j: Judgement = { met: bytes / 2 ** 20 >= threshold, value: bytes / 2 ** 20, threshold, details };
    return { judgement: j, reason: this.describe(j) };
  }
  protected onEvent(e: TraceEvent, pid: number, w: Watch): Verdict | undefined {
    const r = runtimeEvent(e, pid);
    if (r?.kind === 'gc-heap') {
      const bytes = this.heap === 'total' ? r.total : r.sizes[HEAP_INDEX[this.heap]]!;
      const [gen0, gen1, gen2, loh, poh] = r.sizes;
      const details = {
        source: 'collection',
        heapBytes: { gen0, gen1, gen2, loh, poh, total: r.total },
        time: e.time,
      };
      return { reading: true, judge: (w) => this.#judge(w, bytes, details) };
    }
    if (r || e.metadata.provider !== 'System.Runtime') return undefined;
    const c = counterEvent(e, w.metricsSession, pid);
    if (!c || c.kind === 'notice' || c.name !== HEAP_COUNTER[String(this.heap)]) return undefined;
    const bytes = this.heap === 'total' ? c.value * 1e6 : c.value;
    const details = { source: `counter System.Runtime:${c.name}`, time: c.time };
    return { reading: true, level: c.name, judge: (w) => this.#judge(w, bytes, details) };
  }
}

/**
 * -gcgen N: a dump when a collection of generation N starts and another when it ends (a collection of
 * generation N also collects the younger ones, so -gcgen 0 takes the first collection of any kind). Events
 * reach tripdump some 100 ms after the runtime emits them: the "start" dump shows the process right after
 * the collection began, usually after it finished (ProcDump's profiler dumps from inside the GC).
 */
export class GcGenerationTrigger extends DotnetTrigger {
  readonly tag = 'gc_gen' as const;
  readonly setting: readonly [string, string];
  #collection = new Map<number, number>();
  constructor(readonly generation: number) {
    super();
    if (!Number.isInteger(generation) || generation < 0 || generation > 2)
      throw new UsageError(`-gcgen needs a generation 0, 1 or 2, got ${generation}`, '-gcgen');
    this.setting = ['GC Generation:', String(generation)];
  }
  limit(state: TriggerState): number {
    return 2 - state.fired;
  }
  providers(): Provider[] {
    return [{ name: RUNTIME_PROVIDER, keywords: RuntimeKeyword.gc, level: INFORMATIONAL }];
  }
  describe(j: Judgement): string {
    return `GC #${j.value} of generation ${j.threshold}`;
  }
  protected onEvent(e: TraceEvent, pid: number): Verdict | undefined {
    const r = runtimeEvent(e, pid);
    if (r?.kind !== 'gc-start' && r?.kind !== 'gc-end') return undefined;
    // Judged in turn: the end of the chosen collection after its start's dump.
    return {
      judge: (w) => {
        const chosen = this.#collection.get(pid);
        if (
          r.kind === 'gc-start' &&
          chosen === undefined &&
          w.fired === 0 &&
          r.generation >= this.generation
        ) {
          this.#collection.set(pid, r.count);
          const j: Judgement = {
            met: true,
            value: r.count,
            threshold: this.generation,
            details: { phase: 'start', depth: r.generation, reason: r.reason },
          };
          return { judgement: j, reason: `${this.describe(j)} started` };
        }
        if (r.kind === 'gc-end' && chosen === r.count) {
          this.#collection.delete(pid);
          const j: Judgement = {
            met: true,
            value: r.count,
            threshold: this.generation,
            details: { phase: 'end', depth: r.generation },
          };
          return { judgement: j, reason: `${this.describe(j)} finished` };
        }
        return undefined;
      },
    };
  }
}

/** A wildcard match: case-insensitive, `*` for any run of characters, anchored at both ends. */
export function wildcardMatch(text: string, pattern: string): boolean {
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
    'is',
  );
  return re.test(text);
}

/**
 * -e [-f FILTER,…]: a first-chance exception (ExceptionThrown, keyword 0x8000), optionally only those whose
 * "Type: message" (or "Type" without a message) holds one of the filters anywhere, case-insensitive, `*`
 * standing for any run of characters: ProcDump wraps each filter in `*…*` (`-f invalid` matches
 * System.InvalidOperationException, `-f "current state"` its message).
 *
 * The event reaches tripdump some 100 ms after the throw (the runtime flushes its EventPipe buffers to the
 * stream every 100 ms) and the runtime dump starts then, without stopping the thrower at the throw: the
 * dump holds the exception object on the heap (when it is still referenced) but the throwing thread has
 * usually moved on (caught it, unwound, run on). ProcDump's profiler dumps from inside the throw.
 */
export class ExceptionTrigger extends DotnetTrigger {
  readonly tag = 'exception' as const;
  readonly setting: readonly [string, string];
  constructor(readonly filters: readonly string[] = []) {
    super();
    if (filters.some((f) => f.trim() === '')) throw new UsageError('-f has an empty filter', '-f');
    this.setting = ['Exception monitor:', filters.length ? `On (filter: ${filters.join(',')})` : 'On'];
  }
  limit(): number {
    return Number.POSITIVE_INFINITY;
  }
  providers(): Provider[] {
    return [{ name: RUNTIME_PROVIDER, keywords: RuntimeKeyword.exception, level: INFORMATIONAL }];
  }
  describe(): string {
    return 'Exception';
  }
  matches(type: string, message: string): boolean {
    if (this.filters.length === 0) return true;
    const full = message ? `${type}: ${message}` : type;
    return this.filters.some((f) => wildcardMatch(full, `*${f}*`));
  }
  protected onEvent(e: TraceEvent, pid: number): Verdict | undefined {
    const r = runtimeEvent(e, pid);
    if (r?.kind !== 'exception' || !this.matches(r.type, r.message)) return undefined;
    // details.type (the exception's type name) is what dump names use.
    const j: Judgement = {
      met: true,
      value: 1,
      threshold: 1,
      details: { type: r.type, message: r.message, hresult: r.hresult, time: e.time },
    };
    const reason = `Exception ${r.type}${r.message ? `: ${r.message}` : ''}`;
    return { judge: () => ({ judgement: j, reason }) };
  }
}

/** Said once with the first exception dump: what it holds and what it cannot. */
export const EXCEPTION_DUMP_NOTE =
  "the exception dump starts ~100-250 ms after the throw (the runtime sends its events every 100 ms; tripdump loads nothing into the target): it holds the exception object while it is still referenced (dotnet-dump analyze: dumpheap -type TYPE), not the throw on the thread's stack, which has usually moved on (pe and clrthreads show no current exception)";

export interface CounterSpec {
  provider: string;
  counter: string;
  /** 'p95' for a histogram's 95th percentile. */
  percentile?: string;
}

/** Parses `PROVIDER:COUNTER[pNN]`. */
export function parseCounterSpec(value: string, option: string): CounterSpec {
  const m = /^([^:\s]+):([^\s[\]]+)(?:\[(p\d+(?:\.\d+)?)\])?$/i.exec(value.trim());
  if (!m)
    throw new UsageError(
      `${option} needs PROVIDER:COUNTER[pNN] (e.g. System.Runtime:gc-heap-size), got '${value}'`,
      option,
    );
  return { provider: m[1]!, counter: m[2]!, ...(m[3] ? { percentile: m[3].toLowerCase() } : {}) };
}

/** The providers that publish `names` as EventCounters (EventSources) or Metrics (meters), every `intervalSec`. */
export function counterProviders(
  names: readonly string[],
  intervalSec: number,
  metricsSession: string,
  metricsClient: string,
): Provider[] {
  const interval = String(intervalSec);
  return [
    // No keywords: the counters come with the interval argument alone; the source's other events (which
    // keywords switch on) cost the target CPU for nothing.
    ...names.map((name) => ({
      name,
      keywords: 0n,
      level: INFORMATIONAL,
      args: { EventCounterIntervalSec: interval },
    })),
    {
      name: METRICS_PROVIDER,
      // TimeSeriesValues: the values and the session's errors; Messages (0x1) multiplies the target's cost.
      keywords: 0x2n,
      level: INFORMATIONAL,
      args: {
        SessionId: metricsSession,
        Metrics: names.join(','),
        RefreshInterval: interval,
        // dotnet-counters' values: a second client of the shared session must ask for the same.
        MaxTimeSeries: '1000',
        MaxHistograms: '10',
        ClientId: metricsClient,
      },
    },
  ];
}

/** The value a spec reads from a counter sample (a percentile of a histogram), or undefined if n/a. */
export function specValue(spec: CounterSpec, c: CounterValue): number | undefined {
  if (c.provider !== spec.provider || c.name !== spec.counter) return undefined;
  if (spec.percentile) return c.quantiles?.[spec.percentile];
  return c.value;
}

/**
 * -pc / -pcl: an EventCounter (System.Runtime:gc-heap-size) or a Metrics instrument
 * (Microsoft.AspNetCore.Hosting:http.server.request.duration[p95]) at or above / below a value, in the
 * counter's own unit. With tags (one series per tag set), any series may trip it. Values arrive every
 * `intervalSec` (the EventCounter interval is process-wide: the smallest any session asks for wins).
 */
export class CounterTrigger extends DotnetTrigger {
  readonly tag = 'perfcounter' as const;
  readonly setting: readonly [string, string];
  readonly sustain = true;
  #recent: { time: number; value: number; tags: string }[] = [];
  constructor(
    readonly spec: CounterSpec,
    readonly direction: 'above' | 'below',
    readonly threshold: number,
    readonly intervalSec = 1,
  ) {
    super();
    if (!Number.isFinite(threshold))
      throw new UsageError(`counter threshold must be a number, got ${threshold}`);
    this.setting = [
      'Counter Threshold:',
      `${this.#name()} ${direction === 'above' ? '>=' : '<'} ${threshold}`,
    ];
  }
  #name(): string {
    return `${this.spec.provider}:${this.spec.counter}${this.spec.percentile ? `[${this.spec.percentile}]` : ''}`;
  }
  limit(): number {
    return Number.POSITIVE_INFINITY;
  }
  providers(metricsSession: string, metricsClient: string): Provider[] {
    return counterProviders([this.spec.provider], this.intervalSec, metricsSession, metricsClient);
  }
  describe(j: Judgement): string {
    return `Counter ${this.#name()} ${+j.value.toPrecision(6)} ${this.direction === 'above' ? '>=' : '<'} ${j.threshold}`;
  }
  protected onEvent(e: TraceEvent, pid: number, w: Watch): Verdict | undefined {
    const c = counterEvent(e, w.metricsSession, pid);
    if (!c || c.kind === 'notice') return undefined;
    const value = specValue(this.spec, c);
    if (value === undefined || Number.isNaN(value)) return undefined;
    this.#recent.push({ time: c.time, value, tags: c.tags });
    if (this.#recent.length > 60) this.#recent.shift();
    const met = this.direction === 'above' ? value >= this.threshold : value < this.threshold;
    const j: Judgement = {
      met,
      value,
      threshold: this.threshold,
      details: { counter: this.#name(), unit: c.unit, tags: c.tags, values: [...this.#recent] },
    };
    const reason = `${this.describe(j)}${c.tags ? ` (${c.tags})` : ''}`;
    return { level: c.tags, judge: () => ({ judgement: j, reason }) };
  }
}

export function isDotnetTrigger(t: Trigger): boolean {
  return t instanceof DotnetTrigger;
}
