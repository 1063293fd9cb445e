// The `-sig` trigger's watcher: holds the target's threads under ptrace (in a native watcher process) so a
// watched signal stops the target before its handler runs, lets the caller dump it from exactly that state,
// then re-delivers the signal as if nothing happened. Unwatched signals pass straight through.
import { constants } from 'node:os';
import type { CoreDumpOptions, CoreDumpResult } from '../dump/core.js';
import { AbortError, fromNative, native, UsageError } from '../errors.js';
import { binding, type NativeSignalWatch, type SignalEvent } from '../native.js';
import type { FieldName } from '../sampler/fields.js';
import { checkPid } from '../sampler/sampler.js';
import type { DumpFn, FireFn, Judgement, Trigger } from './trigger.js';

export interface SignalHit {
  signo: number;
  /** Thread that received it. */
  tid: number;
  /** ms since the epoch. */
  time: number;
}

export interface SignalWatcherOptions {
  /** Signal numbers or names ('SIGUSR1' or 'USR1'); SIGKILL and SIGSTOP cannot be intercepted. */
  signals: readonly (number | string)[];
  /**
   * Called for each watched signal while every thread of the target is stopped. Call `dump` (at most once)
   * to write a core of the target as it is. The signal is delivered as soon as the dump is written (the
   * target is not held while the callback goes on), or, without a dump, once the returned promise settles.
   */
  onSignal(hit: SignalHit, dump: DumpFn): Promise<void> | void;
  /** The target exited (the watcher ends by itself). */
  onExit?(status: number, signal: number | null): void;
  /** Every thread of the target is held: from here on no watched signal gets past. */
  onAttached?(): void;
  /** Aborting stops the watch (like stop()). */
  signal?: AbortSignal;
}

/** Parses 'SIGUSR1', 'usr1' or 10 into a signal number; throws UsageError otherwise. */
export function signalNumber(s: number | string): number {
  const n =
    typeof s === 'number'
      ? s
      : /^\d+$/.test(s)
        ? Number(s)
        : constants.signals[
            (s.toUpperCase().startsWith('SIG') ? s.toUpperCase() : `SIG${s.toUpperCase()}`) as NodeJS.Signals
          ];
  if (
    n === undefined ||
    !Number.isInteger(n) ||
    n < 1 ||
    n > 64 ||
    n === constants.signals.SIGKILL ||
    n === constants.signals.SIGSTOP
  )
    throw new UsageError(`cannot intercept signal ${String(s)}`, 'signals');
  return n;
}

export class SignalWatcher {
  /** Settles when the watcher has let go of the target; rejects (typed) if the watcher failed. */
  readonly done: Promise<void>;
  #watch: NativeSignalWatch;
  #options: SignalWatcherOptions;
  #pending: { resolve(r: CoreDumpResult): void; reject(e: unknown): void } | undefined;
  #onAbort = () => this.stop();

  /** Attaches to `pid` at once; throws ProcessGoneError, AccessDeniedError or AlreadyTracedError. */
  constructor(pid: number, options: SignalWatcherOptions) {
    checkPid(pid);
    const signals = options.signals.map(signalNumber);
    if (signals.length === 0) throw new UsageError('no signal to watch', 'signals');
    if (options.signal?.aborted) throw new AbortError();
    this.#options = options;
    this.#watch = native(() => binding().watchSignals(pid, signals, (e) => this.#event(e)));
    options.signal?.addEventListener('abort', this.#onAbort, { once: true });
    this.done = this.#watch.done.then(
      () => this.#finish(),
      (e: unknown) => {
        this.#finish();
        throw fromNative(e);
      },
    );
  }

  /** Detaches from every thread; a signal being held is delivered. Idempotent. */
  stop(): void {
    this.#watch.stop();
  }

  #finish(): void {
    this.#options.signal?.removeEventListener('abort', this.#onAbort);
    this.#pending?.reject(new AbortError());
    this.#pending = undefined;
  }

  #event(e: SignalEvent): void {
    switch (e.type) {
      case 'signal':
        void this.#serve({ signo: e.signo, tid: e.tid, time: e.time });
        break;
      case 'dumped':
        this.#pending?.resolve(e.result);
        this.#pending = undefined;
        break;
      case 'dump-error':
        this.#pending?.reject(fromNative(e.error));
        this.#pending = undefined;
        break;
      case 'exit':
        this.#options.onExit?.(e.status, e.signal);
        break;
      case 'attached':
        this.#options.onAttached?.();
        break;
    }
  }

  async #serve(hit: SignalHit): Promise<void> {
    let answered = false;
    const dump: DumpFn = (path: string, options: CoreDumpOptions = {}) => {
      if (answered) return Promise.reject(new UsageError('one dump per signal', 'dump'));
      answered = true;
      return new Promise<CoreDumpResult>((resolve, reject) => {
        this.#pending = { resolve, reject };
        this.#watch.answer({
          path,
          mode: options.mode ?? 'stop',
          ...(options.filter !== undefined ? { filter: options.filter } : {}),
          overwrite: options.overwrite ?? false,
        });
      });
    };
    try {
      await this.#options.onSignal(hit, dump);
    } finally {
      // Not dumped (or the callback failed): let the signal go on.
      if (!answered) {
        answered = true;
        this.#watch.answer(null);
      }
    }
  }
}

const signalName = (n: number) =>
  Object.entries(constants.signals).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;

/**
 * The `-sig` trigger: fires when the target receives one of these signals, with the target stopped right
 * before delivery; the dump is written from that state (through the watcher, which holds the target) and
 * the signal is then delivered as if nothing happened. Signals that arrive while the monitor is cooling
 * down or done are simply delivered.
 */
export class SignalTrigger implements Trigger {
  readonly tag = 'signal' as const;
  readonly fields: readonly FieldName[] = [];
  readonly setting: readonly [string, string];
  readonly signals: readonly number[];

  constructor(signals: readonly (number | string)[]) {
    this.signals = signals.map(signalNumber);
    if (this.signals.length === 0) throw new UsageError('no signal to watch', 'signals');
    this.setting = ['Signal:', this.signals.join(',')];
  }

  limit(): number {
    return Number.POSITIVE_INFINITY;
  }

  describe(j: Judgement): string {
    return `Signal ${signalName(j.value)} (${j.value})`;
  }

  async subscribe(pid: number, fire: FireFn, signal: AbortSignal, armed: () => void): Promise<void> {
    const watcher = new SignalWatcher(pid, {
      signals: this.signals,
      signal,
      onAttached: armed,
      onSignal: async (hit, dump) => {
        const j = { met: true, value: hit.signo, threshold: hit.signo };
        await fire(j, `${this.describe(j)} received by thread ${hit.tid}`, dump);
      },
    });
    await watcher.done;
  }
}
