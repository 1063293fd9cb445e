// The one interface every trigger implements. A trigger says which sampler fields it needs and judges
// one sample of one target; the monitor owns everything else (sustain window, cooldown, dump count,
// quitting), written once for all triggers. Event-driven triggers (signals, crashes) push instead of being
// polled, through `subscribe`.
import type { CoreDumpOptions, CoreDumpResult } from '../dump/core.js';
import type { FieldName, ProcessRecord } from '../sampler/fields.js';
import type { WakeCondition } from '../sampler/sampler.js';

/** The trigger names ProcDump puts in dump file names. */
export type TriggerTag =
  | 'commit'
  | 'cpu'
  | 'thread'
  | 'filedesc'
  | 'socket'
  | 'signal'
  | 'time'
  | 'manual'
  | 'crash'
  // ProcDump 3.x's .NET triggers: -gcm, -gcgen (its profiler's names), -e, -pc/-pcl (CoreDumpWriter.cpp).
  | 'gc_size'
  | 'gc_gen'
  | 'exception'
  | 'perfcounter'
  // Node targets (src/runtimes/node): V8 heap used, event loop blocked.
  | 'heapused'
  | 'loopdelay';

export interface Judgement {
  /** Whether the condition holds in this sample. */
  met: boolean;
  /** The measured value, in the trigger's unit. */
  value: number;
  /** The threshold it was compared with, in the same unit. */
  threshold: number;
  /** What else the trigger measured (an exception's type, a counter's recent values): kept in the sidecar. */
  details?: Record<string, unknown>;
}

/** Writes a core of the target: writeCoreDump, or the trigger's own writer when it already traces the target. */
export type DumpFn = (path: string, options: CoreDumpOptions) => Promise<CoreDumpResult>;

/** What a trigger reports when it fires. */
export interface Firing extends Judgement {
  tag: TriggerTag;
  /** A line for people: "CPU 97.0% >= 90%". */
  reason: string;
  /** Set by a trigger that holds the target under ptrace (signals): dumps must go through it. */
  dump?: DumpFn;
}

export interface FireOptions {
  /**
   * The event is one of a series in which each counts (an exception, a collection): while the target is
   * busy with a dump or cooling down, it waits for its turn instead of being dropped. Readings of a level
   * (a counter) are not queued: the next reading says more than a stale one.
   */
  queue?: boolean;
}

/**
 * How an event-driven trigger reports an event for a target. Resolves true when the monitor acted on it
 * (false when the target was cooling down, busy or done — after waiting for its turn with `queue`), once
 * the actions are over.
 */
export type FireFn = (j: Judgement, reason: string, dump?: DumpFn, options?: FireOptions) => Promise<boolean>;

/** A trigger's state for one target; the monitor keeps one per (target, trigger). */
export interface TriggerState {
  /** How many times this trigger has fired for the target. */
  fired: number;
}

export interface Trigger {
  readonly tag: TriggerTag;
  /** Sampler fields this trigger reads (empty for event-driven triggers). */
  readonly fields: readonly FieldName[];
  /** Line of the settings block, e.g. ["CPU Threshold:", ">= 90%"]. */
  readonly setting: readonly [label: string, value: string];
  /** Dumps this trigger can still produce for one target (Infinity when unbounded): -m 100,200 gives 2. */
  limit(state: TriggerState): number;
  /** Judges one sample (polled triggers). */
  judge?(record: ProcessRecord, state: TriggerState): Judgement | undefined;
  /**
   * When judge() could say met, as one field comparison the sampler's thread checks at every poll (the
   * monitor's event loop then sleeps until it holds). Without it, judge() is asked at every poll.
   */
  condition?(state: TriggerState): Omit<WakeCondition, 'pid'>;
  /**
   * Watches one target for events (event-driven triggers), calling fire for each, until the signal
   * aborts. Calls `armed` once it watches: every event from then on is seen, and a condition that already
   * holds is reported (the monitor says it is monitoring only when every trigger of the target is armed).
   * Resolves when watching has stopped; rejects if it cannot start (the monitor reports it).
   */
  subscribe?(pid: number, fire: FireFn, signal: AbortSignal, armed: () => void): Promise<void>;
  /**
   * An event-driven trigger that reports every value it measures (met or not) sets this: the monitor then
   * applies the sustain window (--for) to its judgements as it does to polled ones.
   */
  readonly sustain?: boolean;
  /** Describes a firing for the log and the sidecar. */
  describe(j: Judgement): string;
}
