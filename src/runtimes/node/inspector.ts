// One inspector connection per Node target (docs/design.md §13), shared through the runtime connection pool by every
// trigger and action on that target.
//
// Opening: a target whose inspector is already open (started with --inspect) is joined as it is and left
// open on release. Otherwise its inspector is opened with SIGUSR1, as Node documents, by the guard process
// (native/inspector/guard.h), which is forked first: it finds the port the inspector really listens on (the
// target's new listening socket, from /proc), reports it, and keeps a plain connection to it. Releasing
// the last lease closes the inspector again through this session (Runtime.evaluate of inspector.close());
// the guard sees that as EOF and exits. A loop known to be blocked (it stays in one task of JavaScript
// across several questions) is not waited for: the guard is told to close the inspector once the loop
// turns, and a new connection to that process waits until it has. If tripdump dies first (even SIGKILL),
// the guard sees EOF on its control socket instead and closes the inspector itself, and V8 resumes a
// target this session had paused as soon as the session's socket closes. So no inspector is left open
// and no target paused, whatever happens to tripdump.

import net from 'node:net';
import { constants } from 'node:os';
import { performance } from 'node:perf_hooks';
import { AbortError, fromNative, native } from '../../errors.js';
import { binding, type NativeTcpListener } from '../../native.js';
import { ConnectionPool, type ProcessKey, type RuntimeConnection } from '../connections.js';
import { type CdpParams, CdpSession, type SendOptions } from './cdp.js';
import { executable, handlesSigusr1, inspectHints, isNodeProcess } from './detect.js';
import { NodeInspectorError } from './errors.js';

/** What closes a Node inspector from inside (Node 20.16+ has getBuiltinModule; older ones get `require` from the command-line API). */
const CLOSE_EXPRESSION =
  "(process.getBuiltinModule ? process.getBuiltinModule('inspector') : require('inspector')).close()";
const CLOSE_PARAMS = { expression: CLOSE_EXPRESSION, includeCommandLineAPI: true };
/**
 * Settles once the event loop has gone through a whole iteration, its poll phase included. Asked before
 * closing: Node opens its inspector on SIGUSR1 both from a V8 interrupt and from a libuv async callback,
 * whichever runs first, and the later one opens it again if it was closed in between. The async callback
 * runs in a poll phase; a loop blocked inside a poll-phase callback sees it only in the next iteration's,
 * after this iteration's check phase: hence two setImmediate hops, not one.
 */
export const LOOP_PROBE = {
  expression: 'new Promise((resolve) => setImmediate(() => setImmediate(resolve)))',
  awaitPromise: true,
};

/**
 * Answers true when the message ran on top of running JavaScript. Inspector messages reach a loop that runs
 * JavaScript through a V8 interrupt, which runs them on that JavaScript's stack; an idle loop runs them
 * from its own callback, with nothing beneath. So more frames than this expression's own two (its function
 * and the script) mean the loop is inside a task now, and LOOP_PROBE waits for that task to end: a blocked
 * loop is known as such at once, without waiting for a timeout. The application's stackTraceLimit and
 * prepareStackTrace are put back as they were; anything but a boolean means "cannot tell".
 */
const BUSY_PROBE = {
  expression:
    '(() => { const E = Error, limit = E.stackTraceLimit, prepare = E.prepareStackTrace; try { E.stackTraceLimit = 3; E.prepareStackTrace = (_, frames) => frames.length; const o = {}; E.captureStackTrace(o); return typeof o.stack === "number" ? o.stack > 2 : undefined; } finally { E.stackTraceLimit = limit; E.prepareStackTrace = prepare; } })()',
  returnByValue: true,
};

const BUSY_ROUNDS = 3;

export interface NodeInspectorOptions {
  /** How long the inspector may take to listen after SIGUSR1 (default 5 s). */
  openTimeoutMs?: number;
  /** How long closing may take before the guard is left to finish it (default 5 s). */
  closeTimeoutMs?: number;
}

const DEFAULTS = { openTimeoutMs: 5000, closeTimeoutMs: 5000 };
/** After a failed open, the guard watches this long for a late start (it closes it at once). */
const LATE_WATCH_MS = 120_000;

interface Endpoint {
  host: string;
  port: number;
  id: string;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Resolves when p settles; rejects with AbortError(message) if signal aborts first. */
function untilSettled(p: Promise<unknown>, signal: AbortSignal, message: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new AbortError(message));
    const onAbort = () => reject(new AbortError(message));
    signal.addEventListener('abort', onAbort, { once: true });
    p.finally(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }).catch(() => {});
  });
}

function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** A connected socket to host:port from inside pid's network namespace, as a Node stream. */
function connectSocket(pid: number, host: string, port: number, timeoutMs: number): net.Socket {
  const fd = native(() => binding().connectTcp(pid, host, port, timeoutMs));
  return new net.Socket({ fd, readable: true, writable: true });
}

/** GET path from an HTTP server in pid's namespace; resolves the body, or undefined on any failure. */
function httpGet(
  pid: number,
  host: string,
  port: number,
  path: string,
  timeoutMs: number,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    let socket: net.Socket;
    try {
      socket = connectSocket(pid, host, port, timeoutMs);
    } catch {
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    const finish = (body: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(body);
    };
    socket.on('error', () => finish(undefined));
    socket.on('close', () => finish(undefined));
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      size += d.length;
      if (size > 2 ** 20) return finish(undefined);
      const text = Buffer.concat(chunks).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end))?.[1];
      if (!/^HTTP\/1\.\d 200 /.test(text) || length === undefined) return finish(undefined);
      const body = Buffer.concat(chunks).subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1'));
      if (body.length >= Number(length)) finish(body.subarray(0, Number(length)).toString('utf8'));
    });
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostPort(host, port)}\r\n\r\n`);
  });
}

/** The Node inspector among these listeners of pid (GET /json/list on each), if there is one. */
async function findInspector(
  pid: number,
  listeners: readonly NativeTcpListener[],
): Promise<Endpoint | undefined> {
  const found = await Promise.all(
    listeners.map(async (l) => {
      const host = l.address === '0.0.0.0' ? '127.0.0.1' : l.address === '::' ? '::1' : l.address;
      const body = await httpGet(pid, host, l.port, '/json/list', 1000);
      if (body === undefined) return undefined;
      try {
        const list = JSON.parse(body) as { id?: unknown; type?: unknown }[];
        const t = Array.isArray(list)
          ? list.find((x) => x.type === 'node' && typeof x.id === 'string')
          : undefined;
        return t ? { host, port: l.port, id: t.id as string } : undefined;
      } catch {
        return undefined;
      }
    }),
  );
  return found.find((f) => f !== undefined);
}

/** tripdump's side of the guard process: its report lines, and the orders "close" and "stop". */
class Guard {
  readonly #socket: net.Socket;
  #buffer = '';
  #lines: string[] = [];
  #wake: () => void = () => {};
  /** The guard's pid (its first line). */
  pid = 0;
  /** The target's pid:startTicks. */
  readonly target: string;
  /** Settles when the guard has exited: its end of the control socket is then closed. */
  readonly exited: Promise<void>;

  constructor(key: ProcessKey, openTimeoutMs: number) {
    this.target = `${key.pid}:${key.startTicks}`;
    const fd = native(() =>
      binding().startInspectorGuard({
        pid: key.pid,
        startTicks: key.startTicks,
        openTimeoutMs,
        lateWatchMs: LATE_WATCH_MS,
        probeMessage: JSON.stringify({ id: 1, method: 'Runtime.evaluate', params: LOOP_PROBE }),
        closeMessage: JSON.stringify({ id: 2, method: 'Runtime.evaluate', params: CLOSE_PARAMS }),
      }),
    );
    this.#socket = new net.Socket({ fd, readable: true, writable: true });
    // The guard's purpose is to act when tripdump is gone: it keeps tripdump alive only while tripdump
    // waits for its report (next()).
    this.#socket.unref();
    this.#socket.setEncoding('utf8');
    this.#socket.on('data', (d: string) => {
      this.#buffer += d;
      for (let nl = this.#buffer.indexOf('\n'); nl >= 0; nl = this.#buffer.indexOf('\n')) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        if (line.startsWith('guard ')) this.pid = Number(line.slice(6));
        else this.#lines.push(line);
      }
      this.#wake();
    });
    this.#socket.on('error', () => {});
    this.exited = new Promise((resolve) =>
      this.#socket.once('close', () => {
        this.#wake();
        resolve();
      }),
    );
    // An 'end' from the guard is its exit: our side ends too, so 'close' follows.
    this.#socket.on('end', () => this.#socket.destroy());
  }

  /** The guard's next report line; undefined once it has exited. Rejects with AbortError on abort. */
  async next(signal: AbortSignal): Promise<string | undefined> {
    this.#socket.ref();
    try {
      while (this.#lines.length === 0 && !this.#socket.destroyed) {
        if (signal.aborted) throw new AbortError('opening the inspector was aborted');
        await new Promise<void>((resolve) => {
          const done = () => {
            signal.removeEventListener('abort', done);
            resolve();
          };
          this.#wake = done;
          signal.addEventListener('abort', done, { once: true });
        });
      }
      return this.#lines.shift();
    } finally {
      this.#socket.unref();
    }
  }

  #order(line: string): void {
    if (!this.#socket.destroyed) this.#socket.write(`${line}\n`);
  }

  /** The guard closes the inspector (once it is open) and then exits; tripdump need not wait. */
  takeOver(): void {
    this.#order('close');
  }

  /** The guard exits without touching anything (the inspector was open before tripdump came). */
  stop(): void {
    this.#order('stop');
  }

  /** Lets go of the control socket: a guard still holding an open inspector closes it. */
  release(): void {
    this.#socket.end();
  }
}

export class NodeInspector implements RuntimeConnection {
  readonly pid: number;
  readonly session: CdpSession;
  /** Whether tripdump opened the inspector (and so closes it), or found it open (and leaves it so). */
  readonly openedByUs: boolean;
  /** Where the inspector listens, in the target's network namespace. */
  readonly endpoint: { host: string; port: number };
  readonly closed: Promise<unknown>;
  readonly #guard: Guard | undefined;
  readonly #closeTimeoutMs: number;
  #closing: Promise<void> | undefined;
  #lock: Promise<unknown> = Promise.resolve();

  private constructor(
    pid: number,
    session: CdpSession,
    endpoint: Endpoint,
    guard: Guard | undefined,
    closeTimeoutMs: number,
  ) {
    this.pid = pid;
    this.session = session;
    this.endpoint = { host: endpoint.host, port: endpoint.port };
    this.openedByUs = guard !== undefined;
    this.#guard = guard;
    this.#closeTimeoutMs = closeTimeoutMs;
    this.closed = session.closed;
  }

  /**
   * Connects to the inspector of the process `key` names, opening it if needed. Rejects with
   * NodeInspectorError ('not-node', 'sigusr1-disabled', 'not-opened', 'closed'), ProcessGoneError,
   * AccessDeniedError, or AbortError; nothing is left open when it rejects.
   */
  static async open(
    key: ProcessKey,
    signal: AbortSignal,
    options: NodeInspectorOptions = {},
  ): Promise<NodeInspector> {
    const o = { ...DEFAULTS, ...options };
    const { pid } = key;
    if (!isNodeProcess(pid))
      throw new NodeInspectorError(
        pid,
        'not-node',
        `process ${pid} is not a Node.js process (${executable(pid) ?? 'executable unreadable'})`,
      );
    const closing = closingByGuard.get(`${pid}:${key.startTicks}`);
    if (closing) await untilSettled(closing, signal, `opening the inspector of process ${pid} was aborted`);
    // Open already? Only the target's own listeners on its inspector port are asked (GET /json/list),
    // or all of them when it was started with --inspect on a random port: others are the application's.
    const hints = inspectHints(pid);
    const own = native(() => binding().tcpListeners(pid, false));
    const candidates = own.filter((l) => l.port === hints.port || (hints.atLaunch && hints.port === 0));
    if (candidates.length) {
      const open = await findInspector(pid, candidates);
      if (open) return NodeInspector.#connect(pid, open, undefined, o, signal);
    }
    if (!handlesSigusr1(pid))
      throw new NodeInspectorError(
        pid,
        'sigusr1-disabled',
        `process ${pid} does not handle SIGUSR1 (started with --disable-sigusr1?): its inspector cannot be opened from outside, and the signal would terminate it`,
      );
    if (signal.aborted) throw new AbortError(`opening the inspector of process ${pid} was aborted`);
    const guard = new Guard(key, o.openTimeoutMs);
    let line: string | undefined;
    try {
      line = await guard.next(signal);
    } catch (e) {
      guard.takeOver();
      throw e;
    }
    const [kind, ...rest] = (line ?? '').split(' ');
    if (kind === 'open') {
      const [host, port, id] = rest as [string, string, string];
      try {
        return await NodeInspector.#connect(pid, { host, port: Number(port), id }, guard, o, signal);
      } catch (e) {
        guard.takeOver();
        throw e;
      }
    }
    if (kind === 'none') {
      // Opened before, by the application (inspector.open()) on a port no flag announced?
      const open = await findInspector(
        pid,
        native(() => binding().tcpListeners(pid, false)),
      );
      if (open) {
        guard.stop();
        return NodeInspector.#connect(pid, open, undefined, o, signal);
      }
      guard.release(); // it watches for a late start and closes it
      throw NodeInspector.#notOpened(pid, hints.port, o.openTimeoutMs);
    }
    guard.release();
    if (kind === 'error') {
      const errno = Number(rest[0]);
      const code = Object.entries(constants.errno).find(([, v]) => v === errno)?.[0] ?? 'E?';
      throw fromNative(
        Object.assign(new Error(`${rest[1]} failed: ${code}`), {
          errno: -errno,
          code,
          syscall: rest[1] ?? '?',
          pid,
        }),
      );
    }
    throw new NodeInspectorError(
      pid,
      'not-opened',
      `the inspector guard of process ${pid} ended unexpectedly`,
    );
  }

  static #notOpened(pid: number, port: number, timeoutMs: number): NodeInspectorError {
    let why = 'it may handle SIGUSR1 itself (process.on("SIGUSR1")), or be blocked outside JavaScript';
    try {
      const taken = binding()
        .tcpListeners(pid, true)
        .some((l) => l.port === port);
      if (taken)
        why = `port ${port} is already in use in its network namespace (Node prints why on its stderr)`;
    } catch {
      // gone meanwhile: the generic reason stands
    }
    return new NodeInspectorError(
      pid,
      'not-opened',
      `process ${pid} did not open its inspector within ${timeoutMs} ms of SIGUSR1: ${why}`,
    );
  }

  static async #connect(
    pid: number,
    at: Endpoint,
    guard: Guard | undefined,
    o: typeof DEFAULTS,
    signal: AbortSignal,
  ): Promise<NodeInspector> {
    const socket = connectSocket(pid, at.host, at.port, o.openTimeoutMs);
    const session = await CdpSession.connect(`ws://${hostPort(at.host, at.port)}/${at.id}`, socket, {
      pid,
      timeoutMs: o.openTimeoutMs,
      signal,
    });
    return new NodeInspector(pid, session, at, guard, o.closeTimeoutMs);
  }

  /** The guard process's pid, while tripdump holds an inspector it opened. */
  get guardPid(): number | undefined {
    return this.#guard?.pid;
  }

  send<T extends CdpParams = CdpParams>(
    method: string,
    params?: CdpParams,
    options?: SendOptions,
  ): Promise<T> {
    return this.session.send<T>(method, params, options);
  }

  /** Whether the target no longer listens on the inspector's port (polled for up to timeoutMs). */
  async #listenerGone(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      let listening: boolean;
      try {
        listening = binding()
          .tcpListeners(this.pid, false)
          .some((l) => l.port === this.endpoint.port);
      } catch {
        return true; // the target is gone, and its sockets with it
      }
      if (!listening) return true;
      if (performance.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * Runs fn alone on this connection: users that pause the debugger, profile or take snapshots must not
   * interleave (one enables a domain another disables).
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => {});
    return run;
  }

  /** Closes our session; an inspector tripdump opened is closed, one found open is left open. Never rejects. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /**
   * Whether the target's loop is known to be blocked: BUSY_PROBE finds JavaScript beneath it on each of
   * BUSY_ROUNDS questions in a row, each asked once the previous one was answered. A short task (a timer's
   * callback) may take one question by interrupt, not several round trips over the connection; a loop
   * that is idle between them answers "no".
   */
  async #blocked(): Promise<boolean> {
    for (let i = 0; i < BUSY_ROUNDS; i++) {
      const busy = await this.session
        .send<{ result?: { value?: unknown } }>('Runtime.evaluate', BUSY_PROBE, {
          timeoutMs: this.#closeTimeoutMs,
        })
        .then(
          (r) => r.result?.value === true,
          // No answer at all, not even by interrupt: the loop is blocked outside JavaScript, and LOOP_PROBE
          // would wait as long again. A connection that ended is not a blocked loop.
          (e: unknown) => e instanceof NodeInspectorError && e.reason === 'timeout',
        );
      if (!busy) return false;
    }
    return true;
  }

  async #close(): Promise<void> {
    const guard = this.#guard;
    if (!guard) {
      await this.session.close();
      return;
    }
    // A loop that stays inside one task of JavaScript (a blocked one, typically: its stack was just taken)
    // would hold the close until it goes round: the guard is handed the close at once instead.
    const busy = await this.#blocked();
    const turned =
      !busy &&
      (await this.session
        .send('Runtime.evaluate', LOOP_PROBE, { timeoutMs: this.#closeTimeoutMs })
        .then(() => true)
        .catch(() => false));
    if (turned && this.session.open) {
      // The reply rarely arrives: the inspector drops every connection, this one too, as it closes.
      this.session.send('Runtime.evaluate', CLOSE_PARAMS).catch(() => {});
      await withTimeout(this.session.closed, this.#closeTimeoutMs);
    }
    // The guard exits when its own connection to the inspector ends, and the listening socket goes in the
    // same turn of the inspector's loop: both are checked, the socket in the kernel's tables.
    const exited =
      !this.session.open &&
      (await withTimeout(
        guard.exited.then(() => true),
        this.#closeTimeoutMs,
      )) === true;
    const gone = exited && (await this.#listenerGone(this.#closeTimeoutMs));
    if (!gone) {
      // The target's loop is blocked (or its JavaScript does not get control at all): the guard closes
      // the inspector once it can, tripdump need not wait for that. Until it has, a new connection to
      // this process waits (open()): it would join an inspector about to be closed under it.
      const done = guard.exited.finally(() => {
        if (closingByGuard.get(guard.target) === done) closingByGuard.delete(guard.target);
      });
      closingByGuard.set(guard.target, done);
      guard.takeOver();
      this.session.terminate();
    }
    guard.release();
  }
}

/** Inspectors of processes (by pid:startTicks) whose guard is closing them: settles when it has. */
const closingByGuard = new Map<string, Promise<void>>();

/** The process-wide pool: every trigger and action on a Node target shares its one connection. */
export const nodeInspectors = new ConnectionPool<NodeInspector>((key, signal) =>
  NodeInspector.open(key, signal),
);

/** Runs fn with a lease on pid's inspector connection, released afterwards (closing it if fn was its last user). */
export async function withNodeInspector<T>(
  pid: number,
  signal: AbortSignal | undefined,
  fn: (inspector: NodeInspector) => Promise<T>,
): Promise<T> {
  const lease = await nodeInspectors.acquire(pid, signal);
  try {
    return await fn(lease.connection);
  } finally {
    await lease.release();
  }
}
