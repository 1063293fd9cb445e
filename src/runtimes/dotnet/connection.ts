// One connection per .NET target (docs/design.md §13), shared through the ConnectionPool by every trigger and action
// on it: the socket's location, the runtime's ProcessInfo, and at most one EventPipe session carrying the
// union of what the subscribers need. Subscribers added in the same tick (the monitor subscribes all of a
// target's triggers at once) share the first session; one that needs more later restarts the session with
// the union (the runtime cannot add providers to a running session). The last subscriber gone stops it.
//
// System.Diagnostics.Metrics (Meter instruments) has one aggregation per process. Since .NET 8 several
// clients may share it when each asks for SessionId "SHARED" with its own ClientId and all agree on
// RefreshInterval, MaxHistograms and MaxTimeSeries (what dotnet-counters monitor and dotnet-monitor do);
// a client that asks for a private session id, or disagrees, is refused by an event on every session
// (MultipleSessionsNotSupportedError, MultipleSessionsConfiguredIncorrectlyError). So: tripdump asks for
// the shared session; when another client's limits differ it takes theirs (they only bound the target's
// memory) and asks again; when the interval differs, or the running session is private, the subscribers
// that read Metrics end with a DotnetMetricsSessionError saying which tool to align or stop. Refusals
// of other clients (tripdump holds the session, they asked for it alone) are theirs, not ours.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConnectionPool, type ProcessKey, type RuntimeConnection } from '../connections.js';
import { DotnetMetricsSessionError, DotnetProtocolError, DotnetUnavailableError } from './errors.js';
import { EventPipeSession, type Provider } from './eventpipe.js';
import { decodePayload, type FieldValue, METRICS_PROVIDER } from './events.js';
import { type ProcessInfo, processInfo } from './ipc.js';
import type { TraceEvent } from './nettrace.js';
import { locateSocket, type SocketLocation } from './socket.js';

export interface SessionListener {
  /** A session carrying this subscriber's providers runs: its events flow from here on. Called once. */
  onStart?(): void;
  onEvent(e: TraceEvent): void;
  /** The session ended by itself: `error` when the stream was malformed or the runtime dropped it. */
  onEnd(error?: Error): void;
}

interface Subscriber {
  providers: readonly Provider[];
  listener: SessionListener;
  started?: boolean;
}

function started(subs: readonly Subscriber[]): void {
  for (const s of subs)
    if (!s.started) {
      s.started = true;
      s.listener.onStart?.();
    }
}

/** The keys of provider arguments that take the smallest / the union of all subscribers' values. */
const MIN_ARGS = new Set(['EventCounterIntervalSec']);
const LIST_ARGS = new Set(['Metrics']);

/** The providers that give every subscriber what it asked for. */
export function mergeProviders(lists: readonly (readonly Provider[])[]): Provider[] {
  const byName = new Map<string, Provider>();
  for (const list of lists)
    for (const p of list) {
      const had = byName.get(p.name);
      if (!had) {
        byName.set(p.name, { ...p, args: { ...p.args } });
        continue;
      }
      had.keywords |= p.keywords;
      had.level = Math.max(had.level, p.level);
      const args = had.args ?? {};
      for (const [k, v] of Object.entries(p.args ?? {})) {
        const cur = args[k];
        if (cur === undefined) args[k] = v;
        else if (MIN_ARGS.has(k)) args[k] = String(Math.min(Number(cur), Number(v)));
        else if (LIST_ARGS.has(k)) args[k] = [...new Set([...cur.split(','), ...v.split(',')])].join(',');
      }
      had.args = args;
    }
  return [...byName.values()];
}

/** Whether a running session with `have` already delivers everything `want` asks for. */
export function coversProviders(have: readonly Provider[], want: readonly Provider[]): boolean {
  return want.every((w) => {
    const h = have.find((p) => p.name === w.name);
    if (!h || (h.keywords & w.keywords) !== w.keywords || h.level < w.level) return false;
    return Object.entries(w.args ?? {}).every(([k, v]) => {
      const cur = h.args?.[k];
      if (cur === undefined) return false;
      if (MIN_ARGS.has(k)) return Number(cur) <= Number(v);
      if (LIST_ARGS.has(k)) return v.split(',').every((x) => cur.split(',').includes(x));
      return true;
    });
  });
}

export class DotnetConnection implements RuntimeConnection {
  readonly closed: Promise<void>;
  /** The System.Diagnostics.Metrics session: "SHARED", so dotnet-counters monitor can run too. */
  readonly metricsSession = 'SHARED';
  /**
   * The ClientId subscribers put in their providers; each EventPipe session gets a fresh one instead
   * (#metricsArgs), because the runtime counts a client id once for the aggregation's whole life: a
   * restarted session reusing it would leave the count one short and the aggregation could be stopped
   * under us when another client leaves.
   */
  readonly metricsClient = randomUUID();
  /** The ClientId of the running session's Metrics provider. */
  #sessionClient: string | undefined;
  /** Limits taken from the shared session another client started (it refused ours once). */
  #sharedLimits: { MaxHistograms: string; MaxTimeSeries: string } | undefined;
  #endClosed!: () => void;
  readonly #subscribers = new Set<Subscriber>();
  #session: EventPipeSession | undefined;
  #sessionProviders: Provider[] = [];
  /** Start/stop operations run one after the other. */
  #ops: Promise<void> = Promise.resolve();
  #scheduled = false;
  #closing = false;

  constructor(
    readonly location: SocketLocation,
    readonly info: ProcessInfo,
  ) {
    this.closed = new Promise((resolve) => {
      this.#endClosed = resolve;
    });
  }

  get pid(): number {
    return this.location.pid;
  }

  /** Adds a subscriber; its events flow once the session (re)starts. Returns the unsubscribe function. */
  subscribe(providers: readonly Provider[], listener: SessionListener): () => void {
    if (this.#closing) {
      queueMicrotask(() => listener.onEnd());
      return () => {};
    }
    const sub: Subscriber = { providers, listener };
    this.#subscribers.add(sub);
    this.#schedule();
    return () => {
      if (this.#subscribers.delete(sub)) this.#schedule();
    };
  }

  /** Reconciles after the current tick, so subscribers added together get one session. */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#ops = this.#ops.then(() => this.#reconcile());
    });
  }

  async #reconcile(): Promise<void> {
    if (this.#closing) return;
    const subs = [...this.#subscribers];
    if (subs.length === 0) {
      await this.#stopSession();
      return;
    }
    const want = mergeProviders(subs.map((s) => s.providers));
    if (this.#session && coversProviders(this.#sessionProviders, want)) {
      started(subs);
      return;
    }
    await this.#stopSession();
    const client = randomUUID();
    let session: EventPipeSession;
    try {
      session = await EventPipeSession.start({
        socketPath: this.location.path,
        pid: this.pid,
        providers: this.#metricsArgs(want, client),
        onEvent: (e) => {
          if (e.metadata.provider === METRICS_PROVIDER && this.#metricsRefusal(e, client)) return;
          for (const s of this.#subscribers) s.listener.onEvent(e);
        },
      });
    } catch (e) {
      for (const s of subs) {
        this.#subscribers.delete(s);
        s.listener.onEnd(e as Error);
      }
      return;
    }
    this.#session = session;
    this.#sessionProviders = want;
    this.#sessionClient = client;
    started(subs.filter((s) => this.#subscribers.has(s)));
    session.ended.then(
      () => this.#ended(session, undefined),
      (e: Error) => this.#ended(session, e),
    );
  }

  /** The providers as sent: the Metrics provider with this session's client id and the shared limits. */
  #metricsArgs(providers: readonly Provider[], client: string): Provider[] {
    return providers.map((p) =>
      p.name === METRICS_PROVIDER && p.args?.SessionId === this.metricsSession
        ? { ...p, args: { ...p.args, ClientId: client, ...this.#sharedLimits } }
        : p,
    );
  }

  /**
   * Whether a Metrics event refuses this session's Metrics (then handled here: the limits are adopted
   * and the session restarted, or the Metrics subscribers end with the reason). Refusals of other
   * clients pass on to the subscribers as notices.
   */
  #metricsRefusal(e: TraceEvent, client: string): boolean {
    const name = e.metadata.eventName;
    if (name !== 'MultipleSessionsNotSupportedError' && name !== 'MultipleSessionsConfiguredIncorrectlyError')
      return false;
    if (this.#sessionClient !== undefined && this.#sessionClient !== client) return false;
    let p: { [name: string]: FieldValue };
    try {
      p = decodePayload(e, this.pid);
    } catch {
      return false; // the subscribers' own decoding reports the malformed event
    }
    const field = (k: string) => (typeof p[k] === 'string' ? (p[k] as string) : String(p[k] ?? ''));
    let error: DotnetMetricsSessionError;
    if (name === 'MultipleSessionsNotSupportedError') {
      // Names the session that runs: ours (SHARED) means another client was refused, not us.
      const running = field('runningSessionId');
      if (running === this.metricsSession) return false;
      error = new DotnetMetricsSessionError(
        this.pid,
        'private',
        `another tool holds the System.Diagnostics.Metrics session of this process for itself (session ${running || 'unnamed'}): the runtime shares it only between clients that ask for the shared session (dotnet-counters monitor, dotnet-monitor); dotnet-counters collect, dotnet-trace and tools for .NET before 8 do not. Its Meter instruments cannot be read until that tool stops`,
      );
    } else {
      if (field('clientId') !== client) return false;
      const running = {
        MaxHistograms: field('expectedMaxHistograms'),
        MaxTimeSeries: field('expectedMaxTimeSeries'),
        interval: field('expectedRefreshInterval'),
      };
      const asked = field('actualRefreshInterval');
      if (Number(running.interval) === Number(asked) && !this.#sharedLimits) {
        // Only the limits differ: take the running session's and ask again (once).
        this.#sharedLimits = { MaxHistograms: running.MaxHistograms, MaxTimeSeries: running.MaxTimeSeries };
        this.#restart();
        return true;
      }
      const limits = `MaxHistograms ${running.MaxHistograms}, MaxTimeSeries ${running.MaxTimeSeries}`;
      error = new DotnetMetricsSessionError(
        this.pid,
        'settings',
        Number(running.interval) === Number(asked)
          ? `another tool shares the System.Diagnostics.Metrics session of this process with limits (${limits}) that still differ from tripdump's after it took theirs: stop the other tool`
          : `another tool reads the System.Diagnostics.Metrics of this process every ${running.interval} s (${limits}); tripdump asked for every ${asked} s, and the runtime shares its Metrics session only between clients that ask for the same interval: use an interval of ${running.interval} s, or stop the other tool`,
      );
    }
    const readers = [...this.#subscribers].filter((s) =>
      s.providers.some((p) => p.name === METRICS_PROVIDER),
    );
    for (const s of readers) {
      this.#subscribers.delete(s);
      s.listener.onEnd(error);
    }
    if (readers.length) this.#schedule();
    return true;
  }

  /** Stops the session and starts it again with what the subscribers need now. */
  #restart(): void {
    this.#ops = this.#ops.then(async () => {
      await this.#stopSession();
      await this.#reconcile();
    });
  }

  #ended(session: EventPipeSession, error: Error | undefined): void {
    if (this.#session !== session || session.stopping) return;
    this.#session = undefined;
    const gone = !alive(this.location.pid, this.location.startTicks);
    const why =
      error ??
      (gone ? undefined : new DotnetProtocolError(this.pid, 'the runtime ended the EventPipe session'));
    const subs = [...this.#subscribers];
    this.#subscribers.clear();
    for (const s of subs) s.listener.onEnd(why);
    if (gone) this.#endClosed();
  }

  async #stopSession(): Promise<void> {
    const s = this.#session;
    this.#session = undefined;
    this.#sessionProviders = [];
    this.#sessionClient = undefined;
    await s?.stop();
  }

  /** Stops the session; subscribers still there are told the session ended. Never rejects. */
  async close(): Promise<void> {
    if (this.#closing) return this.closed;
    this.#closing = true;
    const subs = [...this.#subscribers];
    this.#subscribers.clear();
    this.#ops = this.#ops.then(() => this.#stopSession()).catch(() => {});
    await this.#ops;
    for (const s of subs) s.listener.onEnd();
    this.#endClosed();
  }
}

/** Whether the process with this identity still runs (a zombie whose runtime is gone counts as exited). */
function alive(pid: number, startTicks: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] !== 'Z' && fields[0] !== 'X' && Number(fields[19]) === startTicks;
  } catch {
    return false;
  }
}

async function open(key: ProcessKey, signal: AbortSignal): Promise<DotnetConnection> {
  const location = locateSocket(key.pid);
  if (location.startTicks !== key.startTicks)
    throw new DotnetUnavailableError(
      key.pid,
      'no-socket',
      location.path,
      'the process changed while connecting',
    );
  const info = await processInfo(location.path, key.pid, { signal });
  return new DotnetConnection(location, info);
}

/** Every .NET connection of this process: one per target. */
export const dotnetConnections = new ConnectionPool<DotnetConnection>(open);
