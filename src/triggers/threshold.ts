// Every polled threshold trigger (CPU, memory, threads, fds, sockets) is this one class with a row in
// KINDS: which field it reads, its unit, and how ProcDump names it.
import { UsageError } from '../errors.js';
import type { FieldName, ProcessRecord } from '../sampler/fields.js';
import type { WakeCondition } from '../sampler/sampler.js';
import type { Judgement, Trigger, TriggerState, TriggerTag } from './trigger.js';

export type Direction = 'above' | 'below';

interface Kind {
  tag: TriggerTag;
  field: FieldName;
  /** Multiplier from the user's unit to the field's (MB → bytes for memory). */
  scale: number;
  unit: string;
  label: string;
  /** ProcDump's settings text for the threshold list. */
  show: (t: number) => string;
}

export const KINDS = {
  cpu: {
    tag: 'cpu',
    field: 'cpuPercent',
    scale: 1,
    unit: '%',
    label: 'CPU Threshold:',
    show: (t) => `${t}%`,
  },
  // ProcDump calls it commit but reads RSS: so do we (README), and keep its name in file names.
  memory: {
    tag: 'commit',
    field: 'rssBytes',
    scale: 2 ** 20,
    unit: ' MB',
    label: 'Commit Threshold:',
    show: (t) => `${t} MB`,
  },
  threads: { tag: 'thread', field: 'threads', scale: 1, unit: '', label: 'Thread Threshold:', show: String },
  fds: {
    tag: 'filedesc',
    field: 'fds',
    scale: 1,
    unit: '',
    label: 'File Descriptor Threshold:',
    show: String,
  },
  sockets: { tag: 'socket', field: 'sockets', scale: 1, unit: '', label: 'Socket Threshold:', show: String },
} as const satisfies Record<string, Kind>;

export type ThresholdKind = keyof typeof KINDS;

/**
 * Fires when the field is at or above (or below) the threshold. With several thresholds (-m 100,200),
 * each is used in turn: the n-th firing for a target uses the n-th threshold, and the trigger is spent
 * after the last.
 */
export class ThresholdTrigger implements Trigger {
  readonly tag: TriggerTag;
  readonly fields: readonly FieldName[];
  readonly setting: readonly [string, string];
  readonly kind: Kind;

  constructor(
    kindName: ThresholdKind,
    readonly direction: Direction,
    readonly thresholds: readonly number[],
  ) {
    this.kind = KINDS[kindName];
    if (thresholds.length === 0) throw new UsageError(`${kindName} trigger needs a threshold`);
    for (const t of thresholds)
      if (!Number.isFinite(t) || t < 0) throw new UsageError(`${kindName} threshold must be ≥ 0, got ${t}`);
    this.tag = this.kind.tag;
    this.fields = [this.kind.field];
    this.setting = [
      this.kind.label,
      `${direction === 'above' ? '>=' : '<'} ${thresholds.map(this.kind.show).join(',')}`,
    ];
  }

  limit(state: TriggerState): number {
    return this.thresholds.length > 1 ? this.thresholds.length - state.fired : Number.POSITIVE_INFINITY;
  }

  #threshold(state: TriggerState): number {
    return this.thresholds[Math.min(state.fired, this.thresholds.length - 1)]!;
  }

  judge(record: ProcessRecord, state: TriggerState): Judgement | undefined {
    const raw = record[this.kind.field];
    // Unavailable (first CPU sample, permission): no judgement, and it never counts as 0.
    if (typeof raw !== 'number') return undefined;
    const threshold = this.#threshold(state);
    const value = raw / this.kind.scale;
    return { met: this.direction === 'above' ? value >= threshold : value < threshold, value, threshold };
  }

  condition(state: TriggerState): Omit<WakeCondition, 'pid'> {
    // The scales are powers of two: threshold * scale compares exactly like raw / scale does in judge().
    return {
      field: this.kind.field,
      above: this.direction === 'above',
      value: this.#threshold(state) * this.kind.scale,
    };
  }

  describe(j: Judgement): string {
    const v = Number.isInteger(j.value) ? String(j.value) : j.value.toFixed(1);
    return `${this.kind.label.replace(/ Threshold:$/, '')} ${v}${this.kind.unit} ${this.direction === 'above' ? '>=' : '<'} ${this.kind.show(j.threshold)}`;
  }
}

/** No condition: with no other trigger, ProcDump writes -n dumps, one every -s seconds. */
export class TimerTrigger implements Trigger {
  readonly tag = 'time' as const;
  readonly fields: readonly FieldName[] = [];
  readonly setting = ['Timer:', 'on'] as const;
  limit(): number {
    return Number.POSITIVE_INFINITY;
  }
  judge(): Judgement {
    return { met: true, value: 0, threshold: 0 };
  }
  describe(): string {
    return 'Timer';
  }
}
