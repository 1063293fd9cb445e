// A Snapshot is one sweep's results, read in place from the native column block: typed-array views over
// the block, records built only when asked for. It stays valid until `keep` (default 2) more sweeps have
// started (the table rotates through that many blocks), which lets a caller compare the latest two.
import { UsageError } from '../errors.js';
import type { ColumnLayout, NativeHostSample, NativeIdentity, NativeSweep } from '../native.js';
import { FIELD_NAMES, type FieldName, type ProcessRecord } from './fields.js';

export type ProcessIdentity = NativeIdentity;

/** Host-wide figures of one sweep (with `host: true`). */
export interface HostSample extends Omit<NativeHostSample, 'cpuPercent'> {
  /** Busy share of all CPUs since the previous sweep, 0..100; null on the first. */
  cpuPercent: number | null;
}

/** Per-row flags. */
export const ROW_NEW = 1;
export const ROW_THREAD = 2;

const FIELD_INDEX = new Map(FIELD_NAMES.map((f, i) => [f, i] as const));
const COMM = FIELD_INDEX.get('comm')!;
const decoder = new TextDecoder();

function pairs(a: Float64Array): ProcessIdentity[] {
  const out: ProcessIdentity[] = [];
  for (let i = 0; i < a.length; i += 2) out.push({ pid: a[i]!, startTime: a[i + 1]! });
  return out;
}

/** Typed-array views over one column block, made once per block. */
export class ColumnViews {
  readonly columns: Float64Array[];
  readonly comm: Uint8Array;
  readonly changed: Uint32Array;
  readonly unavailable: Uint32Array;
  readonly flags: Uint32Array;
  constructor(
    readonly buffer: ArrayBuffer,
    capacity: number,
    layout: ColumnLayout,
    commMax: number,
  ) {
    this.columns = FIELD_NAMES.map((_, i) => new Float64Array(buffer, i * capacity * 8, capacity));
    this.comm = new Uint8Array(buffer, layout.comm, capacity * commMax);
    this.changed = new Uint32Array(buffer, layout.changed, capacity);
    this.unavailable = new Uint32Array(buffer, layout.unavailable, capacity);
    this.flags = new Uint32Array(buffer, layout.flags, capacity);
  }
}

export class Snapshot {
  /** Epoch milliseconds at the start of the sweep. */
  readonly time: number;
  /** How long the native sweep took. */
  readonly durationMs: number;
  /** Rows: live processes (zombies included) and, when following threads, threads. */
  readonly length: number;
  /** Sequence number of the sweep, from 0. */
  readonly generation: number;
  readonly host: HostSample | undefined;
  /** The fields this snapshot holds. */
  readonly fields: readonly FieldName[];
  #views: ColumnViews;
  #isValid: () => boolean;
  #commMax: number;
  #rowOf: Map<number, number> | undefined;
  #scanned = false;
  #sweep: NativeSweep;
  #started: ProcessIdentity[] | undefined;
  #exited: ProcessIdentity[] | undefined;

  /** @internal Made by Sampler. */
  constructor(
    sweep: NativeSweep,
    views: ColumnViews,
    fields: readonly FieldName[],
    commMax: number,
    isValid: () => boolean,
  ) {
    this.time = sweep.time;
    this.durationMs = sweep.durationMs;
    this.length = sweep.rows;
    this.generation = sweep.generation;
    this.#sweep = sweep;
    this.host = sweep.host && {
      ...sweep.host,
      cpuPercent: Number.isNaN(sweep.host.cpuPercent) ? null : sweep.host.cpuPercent,
    };
    this.fields = fields;
    this.#views = views;
    this.#commMax = commMax;
    this.#isValid = isValid;
  }

  /** Rows that are new in this sweep. */
  get started(): readonly ProcessIdentity[] {
    this.#started ??= pairs(this.#sweep.started);
    return this.#started;
  }

  /** Processes (or threads) seen to end since the previous sweep; reported once, no longer rows. */
  get exited(): readonly ProcessIdentity[] {
    this.#exited ??= pairs(this.#sweep.exited);
    return this.#exited;
  }

  /** False once two newer sweeps have started: the block under this snapshot is being rewritten. */
  get valid(): boolean {
    return this.#isValid();
  }

  #check(): ColumnViews {
    if (!this.#isValid())
      throw new UsageError(
        `snapshot ${this.generation} is stale: its columns have been reused by a newer sweep (copy records you keep)`,
      );
    return this.#views;
  }

  /**
   * The column of one field, row-aligned with `pids`: a view over native memory, valid as long as the
   * snapshot. Unavailable values are NaN there (see `unavailable`). `comm` holds name lengths; use record().
   */
  column(field: FieldName): Float64Array {
    const i = FIELD_INDEX.get(field);
    if (i === undefined || !this.fields.includes(field))
      throw new UsageError(`field '${field}' was not sampled (sampled: ${this.fields.join(', ')})`);
    return this.#check().columns[i]!.subarray(0, this.length);
  }

  /** Pid (or tid) of every row. */
  get pids(): Float64Array {
    return this.#check().columns[0]!.subarray(0, this.length);
  }
  /** Per row, bit i set when FIELD_NAMES[i] changed since the previous sweep (all set on a new row). */
  get changed(): Uint32Array {
    return this.#check().changed.subarray(0, this.length);
  }
  /** Per row, bit i set when FIELD_NAMES[i] is unavailable (permission, not applicable, first sweep). */
  get unavailable(): Uint32Array {
    return this.#check().unavailable.subarray(0, this.length);
  }
  /** Per row, ROW_NEW | ROW_THREAD. */
  get flags(): Uint32Array {
    return this.#check().flags.subarray(0, this.length);
  }

  /** The row of a pid (or tid), or -1. */
  rowOf(pid: number): number {
    const pids = this.pids;
    // The first lookup scans the pid column (~1 µs per 2,000 rows, in native code); a second one builds
    // the index, which costs ~1 ms per 10,000 rows and pays off only over many lookups.
    if (!this.#scanned) {
      this.#scanned = true;
      return pids.indexOf(pid);
    }
    if (!this.#rowOf) {
      this.#rowOf = new Map();
      for (let r = 0; r < pids.length; r++) this.#rowOf.set(pids[r]!, r);
    }
    return this.#rowOf.get(pid) ?? -1;
  }

  /** The record of a pid (or tid), or undefined when it is not a row of this snapshot. */
  get(pid: number): ProcessRecord | undefined {
    const r = this.rowOf(pid);
    return r < 0 ? undefined : this.record(r);
  }

  /** The record of one row: a plain object, safe to keep. */
  record(row: number): ProcessRecord {
    const v = this.#check();
    if (!Number.isInteger(row) || row < 0 || row >= this.length)
      throw new UsageError(`row ${row} is out of range (0..${this.length - 1})`);
    const out: Record<string, number | string | null> = { pid: v.columns[0]![row]! };
    const na = v.unavailable[row]!;
    for (const f of this.fields) {
      const i = FIELD_INDEX.get(f)!;
      if (na & (1 << i)) out[f] = null;
      else if (i === COMM) {
        const len = v.columns[COMM]![row]!;
        const at = row * this.#commMax;
        out[f] = decoder.decode(v.comm.subarray(at, at + len));
      } else if (f === 'state') out[f] = String.fromCharCode(v.columns[i]![row]!);
      else out[f] = v.columns[i]![row]!;
    }
    return out as ProcessRecord;
  }

  /** Every row's record. */
  *records(): IterableIterator<ProcessRecord> {
    for (let r = 0; r < this.length; r++) yield this.record(r);
  }
}
