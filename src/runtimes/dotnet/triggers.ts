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

/** What a trigger makes of one event: a judgement to report, and whether it may wait for a dump in flight. */
interface Verdict {
  judgement: Judgement;
  reason: string;
  /** Queue it behind a firing in flight instead of dropping it (-gcgen's end after its start). */
  keep?: boolean;
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
  abstract limit(state: TriggerState): number;
  abstract describe(j: Judgement): string;
  /** What the target's session must carry for this trigger. */
  abstract providers(metricsSession: string, metricsClient: string): Provider[];
  /** Judges one event of the target's session. */
  protected abstract onEvent(e: TraceEvent, w: Watch, pid: number): Verdict | undefined;

  async subscribe(pid: number, fire: FireFn, signal: AbortSignal): Promise<void> {
    const lease = await dotnetConnections.acquire(pid, signal);
    const conn = lease.connection;
    const w: Watch = { fired: 0, metricsSession: conn.metricsSession };
    let stop = () => {};
    try {
      await new Promise<void>((resolve, reject) => {
        let queue = Promise.resolve();
        let inflight = 0;
        let failed = false;
        const fail = (e: unknown) => {
          if (failed) return;
          failed = true;
          unsubscribe();
          reject(e);
        };
        const unsubscribe = conn.subscribe(this.providers(conn.metricsSession, conn.metricsClient), {
          onEvent: (e) => {
            let v: Verdict | undefined;
            try {
              v = this.onEvent(e, w, pid);
            } catch (err) {
              fail(err);
              return;
            }
            // While a firing is in flight the monitor would refuse another: drop it, unless it must wait.
            // Values that do not meet the condition still go through (they reset --for's window).
            if (!v || (inflight > 0 && !v.keep && v.judgement.met)) return;
            const verdict = v;
            const counts = verdict.judgement.met;
            if (counts) inflight++;
            queue = queue
              .then(() => fire(verdict.judgement, verdict.reason))
              .then((acted) => {
                if (acted) w.fired++;
              }, fail)
              .finally(() => {
                if (counts) inflight--;
              });
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

/**
 * -gcm: the managed heap (total, or one generation) is at or above each threshold in turn, judged with the
 * generation sizes the runtime reports at the end of every collection (GCHeapStats), which is when
 * ProcDump's profiler measures too. One dump per threshold.
 */
export class GcMemoryTrigger extends DotnetTrigger {
  readonly tag = 'gc_size' as const;
  readonly setting: readonly [string, string];
  readonly sustain = true;
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
    return [{ name: RUNTIME_PROVIDER, keywords: RuntimeKeyword.gc, level: INFORMATIONAL }];
  }
  describe(j: Judgement): string {
    return `.NET ${heapName(this.heap)} heap ${j.value.toFixed(1)} MB >= ${j.threshold} MB`;
  }
  protected onEvent(e: TraceEvent, w: Watch, pid: number): Verdict | undefined {
    const r = runtimeEvent(e, pid);
    if (r?.kind !== 'gc-heap' || w.fired >= this.thresholdsMB.length) return undefined;
    const bytes = this.heap === 'total' ? r.total : r.sizes[HEAP_INDEX[this.heap]]!;
    const threshold = this.thresholdsMB[w.fired]!;
    const j: Judgement = { met: bytes / 2 ** 20 >= threshold, value: bytes / 2 ** 20, threshold };
    const [gen0, gen1, gen2, loh, poh] = r.sizes;
    j.details = { heapBytes: { gen0, gen1, gen2, loh, poh, total: r.total }, time: e.time };
    return { judgement: j, reason: this.describe(j) };
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
  protected onEvent(e: TraceEvent, w: Watch, pid: number): Verdict | undefined {
    const r = runtimeEvent(e, pid);
    if (!r) return undefined;
    const chosen = this.#collection.get(pid);
    if (r.kind === 'gc-start' && chosen === undefined && w.fired === 0 && r.generation >= this.generation) {
      this.#collection.set(pid, r.count);
      const j: Judgement = {
        met: true,
        value: r.count,
        threshold: this.generation,
        details: { phase: 'start', depth: r.generation, reason: r.reason },
      };
      return { judgement: j, reason: `${this.describe(j)} started`, keep: true };
    }
    if (r.kind === 'gc-end' && chosen === r.count) {
      this.#collection.delete(pid);
      const j: Judgement = {
        met: true,
        value: r.count,
        threshold: this.generation,
        details: { phase: 'end', depth: r.generation },
      };
      return { judgement: j, reason: `${this.describe(j)} finished`, keep: true };
    }
    return undefined;
  }
}

/** ProcDump's wildcard match: case-insensitive, `*` for any run of characters, anchored at both ends. */
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
 * "Type" or "Type: message" matches one of the filters (ProcDump's `*` wildcards, case-insensitive).
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
    return this.filters.some((f) => wildcardMatch(type, f) || wildcardMatch(full, f));
  }
  protected onEvent(e: TraceEvent, _w: Watch, pid: number): Verdict | undefined {
    const r = runtimeEvent(e, pid);
    if (r?.kind !== 'exception' || !this.matches(r.type, r.message)) return undefined;
    const j: Judgement = {
      met: true,
      value: 1,
      threshold: 1,
      details: { type: r.type, message: r.message, hresult: r.hresult, time: e.time },
    };
    return { judgement: j, reason: `Exception ${r.type}${r.message ? `: ${r.message}` : ''}` };
  }
}

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
  protected onEvent(e: TraceEvent, w: Watch, pid: number): Verdict | undefined {
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
    return { judgement: j, reason: `${this.describe(j)}${c.tags ? ` (${c.tags})` : ''}` };
  }
}

export function isDotnetTrigger(t: Trigger): boolean {
  return t instanceof DotnetTrigger;
}
