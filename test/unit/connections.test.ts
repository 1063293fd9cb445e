// The runtime connection pool's sharing rules, with connections that record what happens to them (the
// real .NET and Node connections are tested against real targets in test/native).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AbortError, ProcessGoneError } from '../../src/errors.js';
import {
  ConnectionPool,
  type ProcessKey,
  processKey,
  type RuntimeConnection,
} from '../../src/runtimes/connections.js';

class Recorded implements RuntimeConnection {
  closes = 0;
  end!: () => void;
  readonly closed = new Promise<void>((resolve) => {
    this.end = resolve;
  });
  constructor(readonly key: ProcessKey) {}
  async close(): Promise<void> {
    this.closes++;
    this.end();
  }
}

function pool(delayMs = 0) {
  const opened: Recorded[] = [];
  const p = new ConnectionPool<Recorded>(async (key, signal) => {
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    if (signal.aborted) throw new AbortError('open aborted');
    const c = new Recorded(key);
    opened.push(c);
    return c;
  });
  return { p, opened };
}

describe('processKey', () => {
  it('is the pid and field 22 of /proc/PID/stat', () => {
    const stat = readFileSync('/proc/self/stat', 'latin1');
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    expect(processKey(process.pid)).toEqual({ pid: process.pid, startTicks: ticks });
  });
  it('throws ProcessGoneError for a pid that does not exist', () => {
    expect(() => processKey(4_194_304)).toThrow(ProcessGoneError);
  });
});

describe('ConnectionPool', () => {
  it('opens one connection per target, shared by concurrent users, closed by the last release', async () => {
    const { p, opened } = pool(20);
    const [a, b] = await Promise.all([p.acquire(process.pid), p.acquire(process.pid)]);
    expect(opened).toHaveLength(1);
    expect(a.connection).toBe(b.connection);
    await a.release();
    await a.release(); // idempotent: does not take b's reference
    expect(opened[0]!.closes).toBe(0);
    expect(p.size).toBe(1);
    await b.release();
    expect(opened[0]!.closes).toBe(1);
    expect(p.size).toBe(0);
    const c = await p.acquire(process.pid);
    expect(opened).toHaveLength(2);
    await c.release();
  });

  it('forgets a connection that ended by itself, so the next user reconnects', async () => {
    const { p, opened } = pool();
    const a = await p.acquire(process.pid);
    opened[0]!.end();
    await opened[0]!.closed;
    await new Promise((r) => setImmediate(r));
    expect(p.size).toBe(0);
    const b = await p.acquire(process.pid);
    expect(b.connection).not.toBe(a.connection);
    await a.release(); // the old lease's release must not close the new connection
    expect(opened[1]!.closes).toBe(0);
    await b.release();
    expect(opened[1]!.closes).toBe(1);
  });

  it('a waiter whose signal aborts gets AbortError and holds nothing; the open is cancelled when no one waits', async () => {
    const { p, opened } = pool(50);
    const ctl = new AbortController();
    const waiting = p.acquire(process.pid, ctl.signal);
    ctl.abort();
    await expect(waiting).rejects.toBeInstanceOf(AbortError);
    await new Promise((r) => setTimeout(r, 80));
    expect(opened).toHaveLength(0);
    expect(p.size).toBe(0);
  });

  it('an open that fails rejects every waiter and leaves nothing behind', async () => {
    let calls = 0;
    const p = new ConnectionPool<Recorded>(async () => {
      calls++;
      throw new Error('no diagnostics socket');
    });
    await expect(Promise.all([p.acquire(process.pid), p.acquire(process.pid)])).rejects.toThrow(
      'no diagnostics socket',
    );
    expect(calls).toBe(1);
    expect(p.size).toBe(0);
  });

  it('closeAll closes every open connection', async () => {
    const { p, opened } = pool();
    await p.acquire(process.pid);
    await p.acquire(process.ppid);
    await p.closeAll();
    expect(opened.map((c) => c.closes)).toEqual([1, 1]);
    expect(p.size).toBe(0);
  });
});
