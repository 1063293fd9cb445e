// A rule's event-driven trigger (a runtime session: a Node inspector, a .NET EventPipe session) that fails on
// one process is started again, with exponential backoff, for as long as the process runs and the rule
// watches it. Left to the monitor, a failed trigger drops the process from its rule until something makes
// the host sweep look at it again (a reload): the rule silently stops watching it. The failure is the
// rule's, reported through `RetryReport` (the agent's log, metric and status) at each attempt.
import { performance } from 'node:perf_hooks';
import { sleep } from '../abort.js';
import { ProcessGoneError } from '../errors.js';
import type { Trigger, TriggerTag } from '../triggers/trigger.js';

export interface Backoff {
  /** Wait before the first retry, ms; doubled after each failure up to maxMs. */
  firstMs: number;
  maxMs: number;
  /** An attempt that has run this long without failing has recovered: the failure is over, the wait reset. */
  healthyMs: number;
}

export const BACKOFF: Backoff = { firstMs: 1000, maxMs: 60_000, healthyMs: 10_000 };

export interface RetryReport {
  /** The trigger failed on `pid` (attempt `attempt`, from 1); the next attempt starts in `retryInMs`. */
  failed(pid: number, tag: TriggerTag, error: Error, attempt: number, retryInMs: number): void;
  /** The trigger has run `healthyMs` since it failed, or stopped watching: `pid` has no failure now. */
  recovered(pid: number): void;
}

/** `inner`, whose subscribe() retries failures on a process that still runs; as is without subscribe(). */
export function retrying(inner: Trigger, report: RetryReport, backoff: Backoff = BACKOFF): Trigger {
  const { subscribe } = inner;
  if (!subscribe) return inner;
  return {
    tag: inner.tag,
    fields: inner.fields,
    setting: inner.setting,
    limit: (state) => inner.limit(state),
    describe: (j) => inner.describe(j),
    ...(inner.judge ? { judge: inner.judge.bind(inner) } : {}),
    ...(inner.condition ? { condition: inner.condition.bind(inner) } : {}),
    ...(inner.sustain !== undefined ? { sustain: inner.sustain } : {}),
    async subscribe(pid, fire, signal, armed) {
      let delay = backoff.firstMs;
      let attempt = 0;
      let failing = false;
      try {
        while (!signal.aborted) {
          const started = performance.now();
          const healthy = setTimeout(() => {
            if (failing) report.recovered(pid);
            failing = false;
          }, backoff.healthyMs);
          try {
            // Ends without error when the signal aborts or the process has exited.
            await subscribe.call(inner, pid, fire, signal, armed);
            return;
          } catch (e) {
            // The process is gone: the monitor's to handle (its exit), not a failure to retry.
            if (signal.aborted || e instanceof ProcessGoneError) throw e;
            if (performance.now() - started >= backoff.healthyMs) {
              delay = backoff.firstMs;
              attempt = 0;
            }
            failing = true;
            report.failed(pid, inner.tag, e as Error, ++attempt, delay);
          } finally {
            clearTimeout(healthy);
          }
          await sleep(delay, signal);
          delay = Math.min(delay * 2, backoff.maxMs);
        }
      } finally {
        if (failing) report.recovered(pid);
      }
    },
  };
}
