// One connection per .NET target (design §7), shared through the ConnectionPool by every trigger and action
// on it: the socket's location, the runtime's ProcessInfo, and at most one EventPipe session carrying the
// union of what the subscribers need. Subscribers added in the same tick (the monitor subscribes all of a
// target's triggers at once) share the first session; one that needs more later restarts the session with
// the union (the runtime cannot add providers to a running session). The last subscriber gone stops it.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConnectionPool, type ProcessKey, type RuntimeConnection } from '../connections.js';
import { DotnetProtocolError, DotnetUnavailableError } from './errors.js';
import { EventPipeSession, type Provider } from './eventpipe.js';
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
  /** The System.Diagnostics.Metrics session: "SHARED" with our client id, so dotnet-counters can run too. */
  readonly metricsSession = 'SHARED';
  readonly metricsClient = randomUUID();
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
    let session: EventPipeSession;
    try {
      session = await EventPipeSession.start({
        socketPath: this.location.path,
        pid: this.pid,
        providers: want,
        onEvent: (e) => {
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
    started(subs.filter((s) => this.#subscribers.has(s)));
    session.ended.then(
      () => this.#ended(session, undefined),
      (e: Error) => this.#ended(session, e),
    );
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
