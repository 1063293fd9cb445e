// An EventPipe streaming session: CollectTracing3 (no rundown, no stacks: the least work for the target),
// falling back to CollectTracing2 on runtimes before .NET 6; the nettrace stream is fed to the parser as it
// arrives; StopTracing is sent on a second connection, and the stream then ends. A stream that breaks the
// format ends the session with a DotnetProtocolError.
import type net from 'node:net';
import { AbortError } from '../../errors.js';
import { DotnetProtocolError } from './errors.js';
import {
  Command,
  CommandSet,
  checkReply,
  encodeMessage,
  exchange,
  isUnknownCommand,
  PayloadReader,
  PayloadWriter,
  request,
} from './ipc.js';
import { NettraceParser, type TraceEvent } from './nettrace.js';

export interface Provider {
  name: string;
  keywords: bigint;
  /** 1 critical … 5 verbose. */
  level: number;
  /** Provider arguments (EventCounterIntervalSec, Metrics session settings). */
  args?: Record<string, string>;
}

export function encodeProviders(w: PayloadWriter, providers: readonly Provider[]): void {
  w.u32(providers.length);
  for (const p of providers) {
    w.u64(p.keywords).u32(p.level).string(p.name);
    const args = Object.entries(p.args ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(';');
    w.string(args || undefined);
  }
}

export interface SessionOptions {
  socketPath: string;
  pid: number;
  providers: readonly Provider[];
  onEvent(e: TraceEvent): void;
  /** Circular buffer in the target, MB (default 16: counters, GC and exception events are few). */
  bufferMB?: number;
  signal?: AbortSignal;
}

export class EventPipeSession {
  readonly id: bigint;
  /** Settles when the stream has ended: resolves on a clean end (stopped, or the target exited), rejects on a malformed stream. */
  readonly ended: Promise<void>;
  #socket: net.Socket;
  #stopping = false;
  #o: SessionOptions;

  private constructor(o: SessionOptions, id: bigint, socket: net.Socket, rest: Buffer) {
    this.#o = o;
    this.id = id;
    this.#socket = socket;
    const parser = new NettraceParser({ pid: o.pid, onEvent: o.onEvent });
    this.ended = new Promise<void>((resolve, reject) => {
      let failed = false;
      const feed = (chunk: Buffer) => {
        if (failed) return;
        try {
          parser.push(chunk);
        } catch (e) {
          failed = true;
          socket.destroy();
          reject(e);
        }
      };
      socket.on('data', feed);
      // Reset or EPIPE: the target died or dropped the session; both end it like an EOF.
      socket.on('error', () => {});
      socket.on('close', () => {
        if (!failed) resolve();
      });
      if (rest.length) feed(rest);
    });
    // Nobody may be listening yet; a rejection is read through `ended` by whoever awaits it.
    this.ended.catch(() => {});
  }

  static async start(o: SessionOptions): Promise<EventPipeSession> {
    const payload = (v3: boolean) => {
      const w = new PayloadWriter()
        .u32(o.bufferMB ?? 16)
        .u32(1)
        .u8(0);
      if (v3) w.u8(0);
      encodeProviders(w, o.providers);
      return w.bytes();
    };
    let started: Awaited<ReturnType<typeof exchange>> | undefined;
    for (const v3 of [true, false]) {
      const name = v3 ? 'CollectTracing3' : 'CollectTracing2';
      const msg = encodeMessage(
        CommandSet.eventPipe,
        v3 ? Command.collectTracing3 : Command.collectTracing2,
        payload(v3),
      );
      const ex = await exchange(o.socketPath, o.pid, name, msg, { signal: o.signal });
      try {
        checkReply(ex.reply, o.pid, name);
        started = ex;
        break;
      } catch (e) {
        ex.socket.destroy();
        if (!(v3 && isUnknownCommand(e))) throw e;
      }
    }
    const { reply, socket, rest } = started!;
    const id = new PayloadReader(reply.payload, o.pid, 'CollectTracing reply').u64();
    const session = new EventPipeSession(o, id, socket, rest);
    if (o.signal?.aborted) {
      await session.stop();
      throw new AbortError(`the EventPipe session of process ${o.pid} was aborted`);
    }
    return session;
  }

  /**
   * Stops the session (StopTracing on another connection), waits up to `graceMs` for the stream's end, then
   * closes it. Never rejects; idempotent.
   */
  async stop(graceMs = 2000): Promise<void> {
    if (this.#stopping) return this.ended.catch(() => {});
    this.#stopping = true;
    if (!this.#socket.destroyed) {
      const w = new PayloadWriter().u64(this.id);
      try {
        await request(
          this.#o.socketPath,
          this.#o.pid,
          'StopTracing',
          encodeMessage(CommandSet.eventPipe, Command.stopTracing, w.bytes()),
          {
            timeoutMs: graceMs,
          },
        );
      } catch {
        // The target is gone or the session already ended: closing our end is all that is left.
      }
      const timer = setTimeout(() => this.#socket.destroy(), graceMs);
      await this.ended.catch(() => {});
      clearTimeout(timer);
    }
    await this.ended.catch(() => {});
  }

  get stopping(): boolean {
    return this.#stopping;
  }
}

export { DotnetProtocolError };
