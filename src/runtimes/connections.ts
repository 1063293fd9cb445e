// One connection per target per runtime (docs/design.md §13), shared by every trigger and action on that target:
// .NET allows one Metrics session at a time and makes the EventCounter interval process-wide, and a Node
// target has one inspector. Users take a lease; the last release closes the connection, which puts the
// target back as it was (EventPipe session stopped, inspector closed if we opened it).
import { readFileSync } from 'node:fs';
import { AbortError, ProcessGoneError } from '../errors.js';

export interface RuntimeConnection {
  /** Ends the connection and undoes what opening it changed in the target. Never rejects. */
  close(): Promise<void>;
  /** Settles when the connection ends by itself (the target exited, the peer hung up). */
  readonly closed: Promise<unknown>;
}

/** A process's identity: the pid and its start time (field 22 of /proc/PID/stat, clock ticks since boot). */
export interface ProcessKey {
  pid: number;
  startTicks: number;
}

/** Reads a process's key; throws ProcessGoneError when there is no such process. */
export function processKey(pid: number): ProcessKey {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'ENOENT';
    throw new ProcessGoneError({ errno: -2, code, syscall: 'open', path: `/proc/${pid}/stat`, pid });
  }
  // comm may hold spaces and ')': the fields after it start after the last ')'. starttime is field 22,
  // the 20th after comm.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { pid, startTicks: Number(fields[19]) };
}

export interface Lease<C> {
  readonly connection: C;
  /** Gives the connection back; the last lease of a target closes it. Idempotent. */
  release(): Promise<void>;
}

interface Entry<C> {
  refs: number;
  opening: Promise<C>;
  /** Aborts an open still in progress when every waiter has gone. */
  abort: AbortController;
}

export class ConnectionPool<C extends RuntimeConnection> {
  readonly #entries = new Map<string, Entry<C>>();

  /**
   * @param open Connects to the target. It must honour the signal (no half-open connection left when it
   *   aborts) and reject with a typed error saying why it cannot connect.
   */
  constructor(private readonly open: (key: ProcessKey, signal: AbortSignal) => Promise<C>) {}

  /** Connections open or opening. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * A lease on the target's connection, opening it if no one holds it. Rejects with the open's error, or
   * AbortError if `signal` aborts first (the lease is then not taken).
   */
  async acquire(pid: number, signal?: AbortSignal): Promise<Lease<C>> {
    if (signal?.aborted) throw new AbortError(`connecting to process ${pid} was aborted`);
    const key = processKey(pid);
    const id = `${key.pid}:${key.startTicks}`;
    let entry = this.#entries.get(id);
    if (!entry) {
      const abort = new AbortController();
      const created: Entry<C> = { refs: 0, abort, opening: this.open(key, abort.signal) };
      entry = created;
      this.#entries.set(id, created);
      created.opening.then(
        // A connection that ends by itself is forgotten: the next user opens a new one.
        (c) =>
          c.closed.finally(() => {
            if (this.#entries.get(id) === created) this.#entries.delete(id);
          }),
        () => {
          if (this.#entries.get(id) === created) this.#entries.delete(id);
        },
      );
    }
    const held = entry;
    held.refs++;
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      if (--held.refs > 0) return;
      if (this.#entries.get(id) === held) this.#entries.delete(id);
      held.abort.abort();
      const c = await held.opening.catch(() => undefined);
      await c?.close();
    };
    let connection: C;
    try {
      connection = await abortable(held.opening, signal, pid);
    } catch (e) {
      await release();
      throw e;
    }
    return { connection, release };
  }

  /** Closes every connection (tripdump is stopping). */
  async closeAll(): Promise<void> {
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    await Promise.all(
      entries.map(async (e) => {
        e.abort.abort();
        const c = await e.opening.catch(() => undefined);
        await c?.close();
      }),
    );
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined, pid: number): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortError(`connecting to process ${pid} was aborted`));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
