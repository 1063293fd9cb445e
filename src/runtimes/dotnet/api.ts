// The library face of the .NET runtime support: process facts, counters as an async iterator (dumps:
// writeDotnetDump in dump.ts). Everything goes through the shared per-target connection.
import { AbortError } from '../../errors.js';
import { checkPid } from '../../sampler/sampler.js';
import { dotnetConnections } from './connection.js';
import { type CounterValue, counterEvent, type MetricsNotice } from './events.js';
import { type ProcessInfo, processInfo } from './ipc.js';
import { locateSocket } from './socket.js';
import { counterProviders } from './triggers.js';

export interface DotnetProcessInfo extends ProcessInfo {
  pid: number;
  /** The diagnostics socket, as tripdump reaches it. */
  socket: string;
}

/** ProcessInfo2 of a .NET process (runtime version, entry assembly, command line), in a few ms. */
export async function dotnetProcessInfo(
  pid: number,
  options: { signal?: AbortSignal } = {},
): Promise<DotnetProcessInfo> {
  checkPid(pid);
  const loc = locateSocket(pid);
  const info = await processInfo(loc.path, pid, { signal: options.signal });
  return { ...info, pid, socket: loc.path };
}

export interface DotnetCountersOptions {
  /** EventSources and Meters to read (default ['System.Runtime']): each name is asked for both ways. */
  providers?: readonly string[];
  /** Seconds between values (default 1). */
  intervalSec?: number;
  /** Ends the iteration (the session is stopped when the last user leaves). */
  signal?: AbortSignal;
}

/**
 * The connection handles refusals of tripdump's own Metrics session (they end the iteration with a
 * DotnetMetricsSessionError): the session-sharing notices that still arrive are other clients', refused
 * because tripdump holds the session.
 */
function explainNotice(n: MetricsNotice): MetricsNotice {
  if (n.event === 'MultipleSessionsNotSupportedError')
    return {
      ...n,
      text: 'another tool asked for the Metrics session for itself and was refused: tripdump holds it, shared (dotnet-counters monitor can run beside tripdump; dotnet-counters collect cannot)',
    };
  if (n.event === 'MultipleSessionsConfiguredIncorrectlyError')
    return {
      ...n,
      text: `another tool asked to share the Metrics session with other settings and was refused (${n.text})`,
    };
  return n;
}

/**
 * Counter values of a .NET process, as they arrive: EventCounters and System.Diagnostics.Metrics
 * instruments of the given providers. Ends when the signal aborts, the caller breaks out, or the target
 * exits; throws a typed error when the stream is malformed or the target cannot be reached, and a
 * DotnetMetricsSessionError when the runtime will not share its Metrics session (another tool holds it
 * alone or with another interval). Other Metrics messages (limits reached, another tool refused) come as
 * notices.
 */
export async function* dotnetCounters(
  pid: number,
  options: DotnetCountersOptions = {},
): AsyncGenerator<CounterValue | MetricsNotice> {
  checkPid(pid);
  const providers = options.providers?.length ? options.providers : ['System.Runtime'];
  const intervalSec = options.intervalSec ?? 1;
  if (!(intervalSec > 0)) throw new RangeError(`intervalSec must be > 0, got ${intervalSec}`);
  const { signal } = options;
  if (signal?.aborted) throw new AbortError('reading counters was aborted');
  const lease = await dotnetConnections.acquire(pid, signal);
  const conn = lease.connection;
  const queue: (CounterValue | MetricsNotice)[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  let failure: Error | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const unsubscribe = conn.subscribe(
    counterProviders(providers, intervalSec, conn.metricsSession, conn.metricsClient),
    {
      onEvent: (e) => {
        try {
          const c = counterEvent(e, conn.metricsSession, pid);
          if (c?.kind === 'notice') queue.push(explainNotice(c));
          else if (c && providers.includes(c.provider)) queue.push(c);
        } catch (err) {
          failure = err as Error;
          ended = true;
        }
        notify();
      },
      onEnd: (err) => {
        failure ??= err;
        ended = true;
        notify();
      },
    },
  );
  const onAbort = () => {
    ended = true;
    notify();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      while (queue.length) yield queue.shift()!;
      if (failure) throw failure;
      if (ended) return;
      await new Promise<void>((r) => {
        wake = r;
      });
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    unsubscribe();
    await lease.release();
  }
}
