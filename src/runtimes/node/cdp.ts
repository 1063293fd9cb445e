// A Chrome DevTools Protocol session over one WebSocket (the `ws` client): numbered requests matched to
// their replies, events dispatched by method name. Domains are plain method names ('Debugger.pause'), as
// in chrome-remote-interface. What arrives is bounded and checked: a frame larger than maxPayload, a binary
// frame or text that is not a CDP message ends this session (with a typed error), nothing else.

import { constants } from 'node:os';
import type { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import { AbortError, ProcessGoneError } from '../../errors.js';
import { hasExited } from './detect.js';
import { NodeInspectorError } from './errors.js';

/** Largest message accepted: a long CPU profile is tens of MiB, heap snapshot chunks are ~100 KiB. */
export const MAX_MESSAGE_BYTES = 256 * 2 ** 20;

export type CdpParams = Record<string, unknown>;

interface Pending {
  method: string;
  resolve(result: CdpParams): void;
  reject(e: Error): void;
}

export interface SendOptions {
  /** Rejects with NodeInspectorError('timeout') after this long (the request itself cannot be recalled). */
  timeoutMs?: number;
  /** Stops waiting for the reply (AbortError). */
  signal?: AbortSignal;
}

export class CdpSession {
  readonly #ws: WebSocket;
  readonly #pid: number;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Map<string, Set<(params: CdpParams) => void>>();
  readonly #raw = new Map<Buffer, (message: Buffer) => void>();
  #error: Error | undefined;
  /** Settles (never rejects) when the connection has ended, for whatever reason. */
  readonly closed: Promise<void>;

  private constructor(ws: WebSocket, pid: number) {
    this.#ws = ws;
    this.#pid = pid;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.#error ??=
          CdpSession.#exited(pid) ??
          new NodeInspectorError(
            pid,
            'closed',
            `the inspector connection of process ${pid} closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`,
          );
        for (const p of this.#pending.values()) p.reject(this.#error);
        this.#pending.clear();
        resolve();
      });
    });
    ws.on('error', (e: Error & { code?: string }) => {
      // ws names what the peer got wrong (a frame over maxPayload, a bad opcode...) WS_ERR_*.
      const reason = e.code?.startsWith('WS_ERR_') ? 'protocol' : 'closed';
      this.#error ??=
        (reason === 'closed' ? CdpSession.#exited(pid) : undefined) ??
        new NodeInspectorError(pid, reason, `inspector connection of process ${pid}: ${e.message}`);
    });
    ws.on('message', (data, isBinary) => this.#receive(data, isBinary));
  }

  /**
   * The error of a connection that ended because the target died (it was killed mid-snapshot, it exited):
   * that is its exit, told apart from an inspector someone closed by looking at the process.
   */
  static #exited(pid: number): ProcessGoneError | undefined {
    if (!hasExited(pid)) return undefined;
    const e = new ProcessGoneError({
      errno: -constants.errno.ESRCH,
      code: 'ESRCH',
      syscall: 'inspector',
      pid,
    });
    e.message = `process ${pid} exited while tripdump was connected to its inspector`;
    return e;
  }

  /**
   * Opens a session on `url` over an already connected socket (made from inside the target's network
   * namespace). Rejects with NodeInspectorError('closed') when the upgrade fails, AbortError on abort.
   */
  static async connect(
    url: string,
    socket: Duplex,
    options: { pid: number; timeoutMs: number; signal?: AbortSignal | undefined; maxMessageBytes?: number },
  ): Promise<CdpSession> {
    const { pid, signal } = options;
    // ws is loaded with the first session, not with this module: the monitor's command line reaches this
    // file through its Node switches, and a monitor without them must not pay for a WebSocket client.
    const { default: WebSocket } = await import('ws');
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        socket.destroy();
        reject(new AbortError(`connecting to the inspector of process ${pid} was aborted`));
        return;
      }
      const ws = new WebSocket(url, {
        createConnection: () => socket,
        maxPayload: options.maxMessageBytes ?? MAX_MESSAGE_BYTES,
        perMessageDeflate: false,
        handshakeTimeout: options.timeoutMs,
      });
      const onAbort = () => {
        ws.terminate();
        reject(new AbortError(`connecting to the inspector of process ${pid} was aborted`));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const session = new CdpSession(ws, pid);
      ws.once('open', () => {
        signal?.removeEventListener('abort', onAbort);
        resolve(session);
      });
      void session.closed.then(() => {
        signal?.removeEventListener('abort', onAbort);
        reject(session.#error);
      });
    });
  }

  /** Why the session ended, once it has. */
  get error(): Error | undefined {
    return this.#ws.readyState === this.#ws.CLOSED ? this.#error : undefined;
  }

  get open(): boolean {
    return this.#ws.readyState === this.#ws.OPEN;
  }

  #fail(message: string): void {
    this.#error ??= new NodeInspectorError(this.#pid, 'protocol', message);
    this.#ws.terminate();
  }

  #receive(data: WebSocket.RawData, isBinary: boolean): void {
    if (!isBinary && Buffer.isBuffer(data))
      for (const [prefix, handler] of this.#raw)
        if (data.length >= prefix.length && data.compare(prefix, 0, prefix.length, 0, prefix.length) === 0) {
          handler(data);
          return;
        }
    if (isBinary) {
      this.#fail(`process ${this.#pid}'s inspector sent a binary frame`);
      return;
    }
    let m: unknown;
    try {
      m = JSON.parse(Array.isArray(data) ? Buffer.concat(data).toString() : data.toString());
    } catch {
      this.#fail(`process ${this.#pid}'s inspector sent a frame that is not JSON`);
      return;
    }
    if (typeof m !== 'object' || m === null) {
      this.#fail(`process ${this.#pid}'s inspector sent ${typeof m}`);
      return;
    }
    const msg = m as { id?: unknown; method?: unknown; params?: unknown; result?: unknown; error?: unknown };
    if (typeof msg.id === 'number') {
      const p = this.#pending.get(msg.id);
      // A reply nobody waits for any more (its request timed out) is dropped.
      if (!p) return;
      this.#pending.delete(msg.id);
      if (msg.error !== undefined) {
        const e = msg.error as { code?: unknown; message?: unknown };
        p.reject(
          new NodeInspectorError(
            this.#pid,
            'protocol',
            `${p.method} failed in process ${this.#pid}: ${String(e.message ?? 'unknown error')}`,
            typeof e.code === 'number' ? e.code : undefined,
          ),
        );
      } else p.resolve(isObject(msg.result) ? msg.result : {});
      return;
    }
    if (typeof msg.method === 'string') {
      const params = isObject(msg.params) ? msg.params : {};
      for (const l of this.#listeners.get(msg.method) ?? []) l(params);
      return;
    }
    this.#fail(`process ${this.#pid}'s inspector sent a message with neither id nor method`);
  }

  /** Calls a CDP method; resolves with its result, rejects with NodeInspectorError (or AbortError). */
  send<T extends CdpParams = CdpParams>(
    method: string,
    params: CdpParams = {},
    options: SendOptions = {},
  ): Promise<T> {
    if (this.#ws.readyState !== this.#ws.OPEN)
      return Promise.reject(
        this.#error ??
          new NodeInspectorError(
            this.#pid,
            'closed',
            `the inspector connection of process ${this.#pid} is closed`,
          ),
      );
    const { signal, timeoutMs } = options;
    if (signal?.aborted) return Promise.reject(new AbortError(`${method} was aborted`));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        this.#pending.delete(id);
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        done();
        reject(new AbortError(`${method} was aborted`));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined)
        timer = setTimeout(() => {
          done();
          reject(
            new NodeInspectorError(
              this.#pid,
              'timeout',
              `process ${this.#pid} did not answer ${method} within ${timeoutMs} ms (its JavaScript is not getting control)`,
            ),
          );
        }, timeoutMs);
      this.#pending.set(id, {
        method,
        resolve: (r) => {
          done();
          resolve(r as T);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      });
      this.#ws.send(JSON.stringify({ id, method, params }), (e) => {
        if (e && this.#pending.has(id)) this.#pending.get(id)!.reject(e);
      });
    });
  }

  /** Listens to an event; returns the function that stops listening. */
  on(method: string, listener: (params: CdpParams) => void): () => void {
    let set = this.#listeners.get(method);
    if (!set) {
      set = new Set();
      this.#listeners.set(method, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#listeners.delete(method);
    };
  }

  /**
   * Hands messages that begin with exactly `prefix` to `handler` as raw bytes, unparsed: for a stream of
   * large events of a fixed shape (heap snapshot chunks), whose parsing into JS strings would cost more
   * than the rest of the work. The handler checks the shape. Returns the function that stops it.
   */
  onRaw(prefix: string, handler: (message: Buffer) => void): () => void {
    const key = Buffer.from(prefix);
    this.#raw.set(key, handler);
    return () => {
      this.#raw.delete(key);
    };
  }

  /** Stops reading (back-pressure while a writer catches up); events may still arrive from buffered data. */
  pause(): void {
    this.#ws.pause();
  }

  resume(): void {
    this.#ws.resume();
  }

  /** Ends the session with a closing handshake; waits at most timeoutMs, then drops the connection. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.#ws.readyState === this.#ws.CLOSED) return;
    this.#ws.close(1000);
    const timer = setTimeout(() => this.#ws.terminate(), timeoutMs);
    await this.closed;
    clearTimeout(timer);
  }

  /** Drops the connection at once. */
  terminate(): void {
    this.#ws.terminate();
  }
}

function isObject(v: unknown): v is CdpParams {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
