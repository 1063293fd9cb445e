// The flight recorder: a sampler sweeping watched processes (or every process) and the host, keeping the
// last N samples of each, so that when something happens (a crash) the moments before it can be written out.
import { sleep } from '../abort.js';
import type { HistoryEntry } from '../actions/action.js';
import type { FieldName } from '../sampler/fields.js';
import { Sampler } from '../sampler/sampler.js';
import type { HostSample } from '../sampler/snapshot.js';

export interface RecorderOptions {
  /** Processes to record; `'all'` records every process on the host. */
  pids: readonly number[] | 'all';
  fields?: readonly FieldName[] | 'all';
  intervalMs?: number;
  /** Samples kept per process and for the host. Default 60. */
  historySize?: number;
  signal: AbortSignal;
}

export interface Recording {
  processes: { pid: number; startTime: number | null; samples: Record<string, unknown>[] }[];
  host: (HostSample & { time: number })[];
}

export class FlightRecorder {
  readonly #o: Required<Omit<RecorderOptions, 'fields'>> & { fields: RecorderOptions['fields'] };
  readonly #sampler: Sampler;
  readonly #history = new Map<number, HistoryEntry[]>();
  readonly #host: (HostSample & { time: number })[] = [];
  readonly done: Promise<void>;

  /** Starts recording at once; watching a pid that does not exist throws ProcessGoneError. */
  constructor(options: RecorderOptions) {
    this.#o = { intervalMs: 1000, historySize: 60, fields: undefined, ...options };
    const fields =
      options.fields === undefined || options.fields === 'all'
        ? options.fields
        : [...options.fields, 'startTime' as const];
    this.#sampler = new Sampler({ fields, all: options.pids === 'all', host: true });
    try {
      if (options.pids !== 'all') for (const pid of options.pids) this.#sampler.watch(pid);
    } catch (e) {
      this.#sampler.close();
      throw e;
    }
    this.done = this.#run();
  }

  async #run(): Promise<void> {
    const { signal, intervalMs, historySize } = this.#o;
    try {
      while (!signal.aborted) {
        const tick = performance.now();
        const snap = await this.#sampler.sampleAsync();
        for (const r of snap.records()) {
          let h = this.#history.get(r.pid);
          // A reused pid is a new process: its history starts over.
          if (!h || h.at(-1)?.record.startTime !== r.startTime) {
            h = [];
            this.#history.set(r.pid, h);
          }
          h.push({ time: snap.time, record: r });
          if (h.length > historySize) h.shift();
        }
        // An exited process keeps its history for as long as a live one would (a crash is reported after
        // the exit), then it goes, so churn does not grow the recorder.
        const horizon = snap.time - historySize * intervalMs;
        for (const [pid, h] of this.#history) if ((h.at(-1)?.time ?? 0) < horizon) this.#history.delete(pid);
        if (snap.host) {
          this.#host.push({ ...snap.host, time: snap.time });
          if (this.#host.length > historySize) this.#host.shift();
        }
        await sleep(tick + intervalMs - performance.now(), signal);
      }
    } finally {
      this.#sampler.close();
    }
  }

  /** The samples of one process, oldest first (empty when it was never seen). */
  history(pid: number): readonly HistoryEntry[] {
    return this.#history.get(pid) ?? [];
  }

  /** Everything recorded, for writing out. */
  recording(): Recording {
    return {
      processes: [...this.#history].map(([pid, h]) => ({
        pid,
        startTime: (h.at(-1)?.record.startTime as number | undefined) ?? null,
        samples: h.map((e) => ({ time: e.time, ...e.record })),
      })),
      host: [...this.#host],
    };
  }
}
