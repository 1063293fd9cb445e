// Triggers on Node targets, read through the target's inspector connection (shared with every other
// trigger and action on it through the pool).
//
// --heap-used is polled: V8's heap used is a level, like RSS, so it is judged at every poll with the
// monitor's --for, -n and -s. judge() is synchronous and the inspector is not, so each poll asks the
// inspector (Runtime.getHeapUsage) and judges the latest answer: the previous poll's question, answered
// within a millisecond or two. A crossing is seen within two polling intervals. subscribe() holds the
// connection for as long as the monitor watches the target.
//
// --loop-delay is event-driven: a blocked loop matters at the moment it is blocked, which no poll grid
// catches. The trigger keeps one probe in flight, a Runtime.evaluate of a promise that only settles when
// the event loop goes round (LOOP_PROBE); inspector messages reach a busy loop anyway (V8 interrupts it),
// so an unanswered probe means the loop itself is stuck. After each answer the next probe waits one
// polling interval (the probe is "asked at each poll"). A probe unanswered for MS fires at once, while the
// loop is still blocked, so the actions (the stack first) see it blocked. The same block fires once.
// With --for S, "unanswered for MS" must hold S seconds more: the loop blocked MS + S.
import { performance } from 'node:perf_hooks';
import { sleep } from '../../abort.js';
import { AbortError, UsageError } from '../../errors.js';
import type { FieldName, ProcessRecord } from '../../sampler/fields.js';
import type { FireFn, Judgement, Trigger, TriggerState } from '../../triggers/trigger.js';
import { type Lease, type ProcessKey, processKey } from '../connections.js';
import { LOOP_PROBE, type NodeInspector, nodeInspectors } from './inspector.js';

const MB = 2 ** 20;

/** Whether the process the key names still runs (the same process, not a reused pid). */
function stillRuns(key: ProcessKey): boolean {
  try {
    return processKey(key.pid).startTicks === key.startTicks;
  } catch {
    return false;
  }
}

/** Resolves when signal aborts. */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

interface HeapWatch {
  inspector: NodeInspector;
  asking: boolean;
  /** The latest answer, MB. */
  usedMb: number | undefined;
}

/**
 * Fires when the target's V8 heap used (Runtime.getHeapUsage: live objects, not the reserved heap, not
 * RSS) is at or above a threshold in MB. With several thresholds (--heap-used 100,200) each is used in
 * turn, as -m does.
 */
export class HeapUsedTrigger implements Trigger {
  readonly tag = 'heapused' as const;
  readonly fields: readonly FieldName[] = [];
  readonly setting: readonly [string, string];
  readonly #watches = new Map<number, HeapWatch>();

  constructor(readonly thresholds: readonly number[]) {
    if (thresholds.length === 0) throw new UsageError('the heap trigger needs a threshold', 'heap-used');
    for (const t of thresholds)
      if (!Number.isFinite(t) || t < 0)
        throw new UsageError(`heap threshold must be ≥ 0 MB, got ${t}`, 'heap-used');
    this.setting = ['Heap Used Threshold:', `>= ${thresholds.map((t) => `${t} MB`).join(',')}`];
  }

  limit(state: TriggerState): number {
    return this.thresholds.length > 1 ? this.thresholds.length - state.fired : Number.POSITIVE_INFINITY;
  }

  judge(record: ProcessRecord, state: TriggerState): Judgement | undefined {
    const w = this.#watches.get(record.pid);
    if (!w) return undefined;
    this.#ask(w);
    if (w.usedMb === undefined) return undefined;
    const threshold = this.thresholds[Math.min(state.fired, this.thresholds.length - 1)]!;
    return { met: w.usedMb >= threshold, value: w.usedMb, threshold };
  }

  #ask(w: HeapWatch): void {
    if (w.asking) return;
    w.asking = true;
    w.inspector
      .send<{ usedSize: number }>('Runtime.getHeapUsage')
      .then((r) => {
        if (typeof r.usedSize === 'number') w.usedMb = r.usedSize / MB;
      })
      .catch(() => {
        // The connection ended: subscribe() reports it.
      })
      .finally(() => {
        w.asking = false;
      });
  }

  async subscribe(pid: number, _fire: FireFn, signal: AbortSignal, armed: () => void): Promise<void> {
    const key = processKey(pid);
    const lease = await nodeInspectors.acquire(pid, signal);
    const w: HeapWatch = { inspector: lease.connection, asking: true, usedMb: undefined };
    this.#watches.set(pid, w);
    try {
      // Armed with a first answer in hand: the next poll judges it, so a heap already above fires then.
      const first = lease.connection
        .send<{ usedSize: number }>('Runtime.getHeapUsage')
        .then(
          (r) => {
            if (typeof r.usedSize === 'number') w.usedMb = r.usedSize / MB;
            armed();
          },
          () => {
            // The connection ended: looked at below.
          },
        )
        .finally(() => {
          w.asking = false;
        });
      await Promise.race([first, aborted(signal), lease.connection.closed]);
      await Promise.race([aborted(signal), lease.connection.closed]);
      // The connection ended while the target lives on (someone closed its inspector): say so. A target
      // that exited is the monitor's to notice.
      if (!signal.aborted && stillRuns(key)) throw lease.connection.session.error ?? new AbortError();
    } finally {
      this.#watches.delete(pid);
      await lease.release();
    }
  }

  describe(j: Judgement): string {
    return `Heap Used ${j.value.toFixed(1)} MB >= ${j.threshold} MB`;
  }
}

export interface LoopDelayOptions {
  /** Time between an answer and the next probe, ms (the monitor's polling interval; default 1000). */
  intervalMs?: number;
  /** --for: how much longer the probe must stay unanswered, ms (default 0). */
  sustainMs?: number;
}

/** Fires when the target's event loop has not answered a probe for MS ms (see the file's comment). */
export class LoopDelayTrigger implements Trigger {
  readonly tag = 'loopdelay' as const;
  readonly fields: readonly FieldName[] = [];
  readonly setting: readonly [string, string];
  readonly #intervalMs: number;
  readonly #sustainMs: number;

  constructor(
    readonly thresholdMs: number,
    options: LoopDelayOptions = {},
  ) {
    if (!Number.isFinite(thresholdMs) || thresholdMs < 1)
      throw new UsageError(`loop delay threshold must be ≥ 1 ms, got ${thresholdMs}`, 'loop-delay');
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#sustainMs = options.sustainMs ?? 0;
    this.setting = ['Loop Delay Threshold:', `>= ${thresholdMs} ms`];
  }

  limit(): number {
    return Number.POSITIVE_INFINITY;
  }

  describe(j: Judgement): string {
    return `Event loop blocked ${Math.round(j.value)} ms >= ${j.threshold} ms`;
  }

  async subscribe(pid: number, fire: FireFn, signal: AbortSignal, armed: () => void): Promise<void> {
    const key = processKey(pid);
    const lease: Lease<NodeInspector> = await nodeInspectors.acquire(pid, signal);
    const inspector = lease.connection;
    const stop = aborted(signal).then(() => 'stop' as const);
    // The first probe goes out now: a loop already blocked fires MS from here.
    armed();
    try {
      while (!signal.aborted) {
        const sent = performance.now();
        const answer = inspector.send('Runtime.evaluate', LOOP_PROBE).then(() => 'answered' as const);
        // A rejection (the connection ended) is looked at below, never left unhandled.
        answer.catch(() => {});
        const timer = new AbortController();
        const late = sleep(this.thresholdMs + this.#sustainMs, timer.signal).then(() => 'late' as const);
        const first = await Promise.race([answer, late, stop]).finally(() => timer.abort());
        if (first === 'stop' || signal.aborted) break;
        if (first === 'late') {
          const value = performance.now() - sent;
          const j = { met: true, value, threshold: this.thresholdMs };
          await fire(j, this.describe(j));
          // One firing per block: the next probe goes out once this one is answered.
          if ((await Promise.race([answer, stop])) === 'stop') break;
        }
        await sleep(this.#intervalMs, signal);
      }
    } catch (e) {
      // The connection ended while the target lives on (someone closed its inspector): say so.
      if (!signal.aborted && stillRuns(key)) throw e;
    } finally {
      await lease.release();
    }
  }
}
