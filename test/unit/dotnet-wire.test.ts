// The .NET wire formats without a runtime: the nettrace reader on a real .NET 10 capture and on
// synthesized streams (split anywhere, wrapped timestamps, unknown blocks), fuzzed; the IPC client against a
// fake diagnostics server that sends truncated, oversized, garbled or no frames. Every failure is a typed
// error (DotnetProtocolError, DotnetRuntimeError, DotnetTimeoutError), never a crash or a hang.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coversProviders, mergeProviders } from '../../src/runtimes/dotnet/connection.js';
import {
  DotnetProtocolError,
  DotnetRuntimeError,
  DotnetTimeoutError,
  DotnetUntrustedSocketError,
} from '../../src/runtimes/dotnet/errors.js';
import { EventPipeSession, type Provider } from '../../src/runtimes/dotnet/eventpipe.js';
import { counterEvent, parseQuantiles, runtimeEvent } from '../../src/runtimes/dotnet/events.js';
import { encodeMessage, MAGIC, processInfo, request } from '../../src/runtimes/dotnet/ipc.js';
import { NettraceParser, type TraceEvent } from '../../src/runtimes/dotnet/nettrace.js';
import { parseCounterSpec, parseGcm, wildcardMatch } from '../../src/runtimes/dotnet/triggers.js';

const capture = readFileSync(path.join(import.meta.dirname, 'fixtures', 'dotnet10-session.nettrace'));

function parseAll(
  chunks: Buffer[],
  maxBlockBytes?: number,
): { events: TraceEvent[]; parser: NettraceParser } {
  const events: TraceEvent[] = [];
  const parser = new NettraceParser({
    onEvent: (e) => events.push(e),
    ...(maxBlockBytes ? { maxBlockBytes } : {}),
  });
  for (const c of chunks) parser.push(c);
  return { events, parser };
}

// A small nettrace writer for synthesized streams (the layout of NetTraceFormat_v5.md).
const u16 = (v: number) => Buffer.from(Uint16Array.of(v).buffer);
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};
const i64 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, v));
  return b;
};
const utf16z = (s: string) => Buffer.from(`${s}\0`, 'utf16le');
function varint(v: bigint): Buffer {
  const out: number[] = [];
  let x = BigInt.asUintN(64, v);
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x) b |= 0x80;
    out.push(b);
  } while (x);
  return Buffer.from(out);
}
function typeHeader(name: string, version: number): Buffer {
  return Buffer.concat([
    Buffer.from([5, 5, 1]),
    u32(version),
    u32(version),
    u32(name.length),
    Buffer.from(name),
    Buffer.from([6]),
  ]);
}
function object(stream: Buffer[], name: string, body: Buffer): void {
  const at = stream.reduce((n, b) => n + b.length, 0);
  const head = Buffer.concat([typeHeader(name, 2), u32(body.length)]);
  const pad = (4 - ((at + head.length) % 4)) % 4;
  stream.push(head, Buffer.alloc(pad), body, Buffer.from([6]));
}
/** A compressed event blob: metadata id, timestamp delta, payload. */
function blob(metadataId: number, delta: bigint, payload: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from([1 | 2 | 128]),
    varint(BigInt(metadataId)),
    varint(0n),
    varint(7n),
    varint(0n),
    varint(delta),
    varint(BigInt(payload.length)),
    payload,
  ]);
}
function block(blobs: Buffer[]): Buffer {
  return Buffer.concat([u16(20), u16(1), i64(0n), i64(0n), ...blobs]);
}
function synth(opts: { deltas?: bigint[]; extra?: (s: Buffer[]) => void } = {}): Buffer {
  const s: Buffer[] = [Buffer.from('Nettrace'), u32(20), Buffer.from('!FastSerialization.1')];
  const trace = Buffer.concat([
    ...[2026, 11, 1, 30, 12, 0, 0, 0].map(u16),
    i64(1000n),
    i64(1000n),
    u32(8),
    u32(42),
    u32(2),
    u32(0),
  ]);
  s.push(typeHeader('Trace', 4), trace, Buffer.from([6]));
  // Metadata 1: provider P, event 7 "Tick", one Int32 field "n".
  const meta = Buffer.concat([
    u32(1),
    utf16z('P'),
    u32(7),
    utf16z('Tick'),
    i64(0n),
    u32(0),
    u32(4),
    u32(1),
    u32(9),
    utf16z('n'),
  ]);
  object(s, 'MetadataBlock', block([blob(0, 0n, meta)]));
  opts.extra?.(s);
  const deltas = opts.deltas ?? [1000n, 1000n, 1000n];
  object(s, 'EventBlock', block(deltas.map((d, i) => blob(1, d, u32(i + 1)))));
  s.push(Buffer.from([1]));
  return Buffer.concat(s);
}

describe('nettrace reader', () => {
  it('reads a real .NET 10 session: GC, exception, EventCounters and Metrics events', () => {
    const { events, parser } = parseAll([capture]);
    expect(parser.complete).toBe(true);
    expect(parser.trace?.pointerSize).toBe(8);
    const decoded = events.map((e) => runtimeEvent(e) ?? counterEvent(e, 'SHARED')).filter(Boolean);
    expect(decoded).toContainEqual(expect.objectContaining({ kind: 'gc-start', generation: 2 }));
    expect(decoded).toContainEqual(
      expect.objectContaining({
        kind: 'exception',
        type: 'Fixture.OrderFailedException',
        message: 'captured for the parser test',
      }),
    );
    expect(decoded).toContainEqual(
      expect.objectContaining({
        kind: 'gauge',
        provider: 'Tripdump.Fixture',
        name: 'fixture.gauge',
        value: 12.25,
      }),
    );
    expect(decoded).toContainEqual(
      expect.objectContaining({
        kind: 'mean',
        provider: 'Tripdump-Fixture',
        name: 'fixture-gauge',
        value: 12.25,
      }),
    );
    const heap = decoded.find((d) => d?.kind === 'gc-heap');
    expect(heap && 'total' in heap && heap.total).toBe(
      heap && 'sizes' in heap && heap.sizes.reduce((a, b) => a + b, 0),
    );
    // Event times are wall-clock ms derived from the trace's clock, in order within a thread.
    for (const e of events) expect(Math.abs(e.time - events[0]!.time)).toBeLessThan(60_000);
  });

  it('gives the same events however the stream is cut', () => {
    const whole = parseAll([capture]).events.map((e) => [
      e.metadata.eventName,
      e.time,
      e.payload.toString('hex'),
    ]);
    const bytewise = parseAll([...capture].map((b) => Buffer.from([b]))).events.map((e) => [
      e.metadata.eventName,
      e.time,
      e.payload.toString('hex'),
    ]);
    expect(bytewise).toEqual(whole);
    for (const cut of [1, 7, 33, 100, 1000, 3000]) {
      const split = parseAll([capture.subarray(0, cut), capture.subarray(cut)]).events.length;
      expect(split).toBe(whole.length);
    }
  });

  it('adds timestamp deltas modulo 2^64 (deltas across threads wrap) and skips unknown blocks by their size', () => {
    const { events } = parseAll([
      synth({
        deltas: [1000n, 2n ** 64n - 500n, 1000n],
        extra: (s) => object(s, 'SomeFutureBlock', Buffer.from('whatever a later runtime puts here')),
      }),
    ]);
    expect(events.map((e) => e.payload.readUInt32LE(0))).toEqual([1, 2, 3]);
    // 1000 ticks per second from QPC 1000: the second event is 500 ticks before the first.
    expect(events[1]!.time - events[0]!.time).toBeCloseTo(-500, 6);
    expect(events[2]!.time - events[1]!.time).toBeCloseTo(1000, 6);
  });

  const bad: [string, Buffer, RegExp][] = [
    [
      'a stream that is not nettrace',
      Buffer.from('NOTtrace............................'),
      /does not start with "Nettrace"/,
    ],
    ['a version 6 stream', Buffer.concat([Buffer.from('Nettrace'), u32(0), u32(6), u32(0)]), /version 6/],
    [
      'an object tag that is neither 5 nor 1',
      Buffer.concat([synth().subarray(0, 32), Buffer.from([9])]),
      /expected an object/,
    ],
    [
      'a type name of 1 MB',
      Buffer.concat([synth().subarray(0, 32), Buffer.from([5, 5, 1]), u32(2), u32(2), u32(1 << 20)]),
      /type name of 1048576 bytes/,
    ],
  ];
  it.each(bad)('rejects %s with a DotnetProtocolError', (_name, bytes, message) => {
    expect(() => parseAll([bytes])).toThrow(DotnetProtocolError);
    expect(() => parseAll([bytes])).toThrow(message);
  });

  it('refuses an oversized block as soon as its size is known, without buffering it', () => {
    const s: Buffer[] = [synth().subarray(0, 32 + typeHeader('Trace', 4).length + 49)];
    s.push(typeHeader('EventBlock', 2), u32(64 * 2 ** 20));
    expect(() => parseAll([Buffer.concat(s)])).toThrow(
      /EventBlock block of 67108864 bytes \(at most 16777216\)/,
    );
  });

  it('rejects an event whose metadata was never defined, and a payload past its block', () => {
    const good = synth();
    // Metadata id 1 → 2 in the event block's first event (flags 0x83, then varint id).
    const at = good.lastIndexOf(Buffer.from([0x83, 1, 0, 7, 0]));
    const undefinedMeta = Buffer.from(good);
    undefinedMeta[at + 1] = 2;
    expect(() => parseAll([undefinedMeta])).toThrow(/refers to metadata 2, which was never defined/);
    const longPayload = Buffer.from(good);
    longPayload[at + 7] = 0x7f; // the payload size, after the 2-byte timestamp delta (1000)
    expect(() => parseAll([longPayload])).toThrow(DotnetProtocolError);
  });

  it('survives fuzzing: any mutation parses or throws DotnetProtocolError, quickly', () => {
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const inputs = [capture, synth()];
    const t0 = performance.now();
    for (let i = 0; i < 3000; i++) {
      const src = inputs[i % inputs.length]!;
      const b = Buffer.from(src);
      const kind = rand(4);
      if (kind === 0) for (let k = 0; k < 1 + rand(8); k++) b[rand(b.length)] = rand(256);
      const mutated =
        kind === 1
          ? b.subarray(0, rand(b.length))
          : kind === 2
            ? Buffer.concat([
                b.subarray(0, rand(b.length)),
                Buffer.from([rand(256), rand(256), rand(256), rand(256)]),
                b.subarray(rand(b.length)),
              ])
            : b;
      if (kind === 3) mutated.writeUInt32LE(rand(2 ** 31), Math.max(0, rand(b.length - 4)));
      try {
        const pieces = [mutated.subarray(0, rand(mutated.length + 1))];
        pieces.push(mutated.subarray(pieces[0]!.length));
        const { events } = parseAll(pieces);
        for (const e of events) {
          runtimeEvent(e);
          counterEvent(e, 'SHARED');
        }
      } catch (e) {
        expect(e).toBeInstanceOf(DotnetProtocolError);
      }
    }
    expect(performance.now() - t0).toBeLessThan(20_000);
  });
});

describe('IPC client against a fake diagnostics server', () => {
  let dir: string;
  let n = 0;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tripdump-fake-ipc-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A server that answers each connection with `answer(request, socket)`; closed after the test. */
  async function fake(
    answer: (req: Buffer, s: net.Socket, nth: number) => void,
  ): Promise<{ path: string; requests: Buffer[]; close(): Promise<void> }> {
    const file = path.join(dir, `s${n++}`);
    const requests: Buffer[] = [];
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.once('data', (d) => {
        requests.push(d);
        answer(d, s, requests.length);
      });
    });
    await new Promise<void>((r) => server.listen(file, r));
    return {
      path: file,
      requests,
      close: () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          server.close(() => r());
        }),
    };
  }
  const header = (size: number, set: number, id: number) =>
    encodeMessage(set, id)
      .subarray(0, 20)
      .fill(0, 14, 16)
      .map((b, i) => (i === 14 ? size & 0xff : i === 15 ? size >> 8 : b));
  const ok = (payload: Buffer) => Buffer.concat([header(20 + payload.length, 0xff, 0), payload]);
  const msg = encodeMessage(4, 4);
  const pid = process.pid;

  it('a frame cut short, then the connection closed: DotnetProtocolError', async () => {
    const f = await fake((_r, s) => s.end(ok(Buffer.alloc(40)).subarray(0, 30)));
    await expect(request(f.path, pid, 'ProcessInfo2', msg)).rejects.toThrow(
      /closed in the middle of the reply to ProcessInfo2 \(30 bytes/,
    );
    await f.close();
  });

  it('an oversized frame (65535 bytes announced, 100 sent): DotnetProtocolError', async () => {
    const f = await fake((_r, s) => s.end(Buffer.concat([header(65535, 0xff, 0), Buffer.alloc(80)])));
    await expect(request(f.path, pid, 'ProcessInfo2', msg)).rejects.toBeInstanceOf(DotnetProtocolError);
    await f.close();
  });

  it('a header shorter than itself, or another magic: DotnetProtocolError', async () => {
    const f = await fake((_r, s) => s.end(header(12, 0xff, 0)));
    await expect(request(f.path, pid, 'ProcessInfo2', msg)).rejects.toThrow(/says its frame is 12 bytes/);
    const g = await fake((_r, s) => s.end(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')));
    await expect(request(g.path, pid, 'ProcessInfo2', msg)).rejects.toThrow(
      /does not start with DOTNET_IPC_V1/,
    );
    await Promise.all([f.close(), g.close()]);
  });

  it('half a header and then silence: DotnetTimeoutError, no hang', async () => {
    const f = await fake((_r, s) => s.write(MAGIC.subarray(0, 10)));
    const t0 = performance.now();
    await expect(request(f.path, pid, 'ProcessInfo2', msg, { timeoutMs: 300 })).rejects.toBeInstanceOf(
      DotnetTimeoutError,
    );
    expect(performance.now() - t0).toBeLessThan(2000);
    await f.close();
  });

  it('a server that is not the process asked about is refused before a byte is sent (SO_PEERCRED)', async () => {
    // This process listens; the command is for our parent (same user, so only the pid tells them apart).
    const file = path.join(dir, `s${n++}`);
    let received = 0;
    let closed!: () => void;
    const peerClosed = new Promise<void>((r) => {
      closed = r;
    });
    const server = net.createServer((s) => {
      s.once('close', () => closed());
      s.on('data', (d: Buffer) => {
        received += d.length;
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(file, r));
    const e = await request(file, process.ppid, 'ProcessInfo2', msg).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DotnetUntrustedSocketError);
    expect((e as DotnetUntrustedSocketError).holder).toEqual({ pid: process.pid, uid: process.getuid!() });
    expect((e as Error).message).toContain(`held by process ${process.pid}`);
    expect((e as Error).message).toContain(`not by the target (process ${process.ppid}`);
    // Once the server saw the connection close, everything the client wrote has arrived: nothing.
    await peerClosed;
    expect(received).toBe(0);
    await new Promise<void>((r) => server.close(() => r()));
  });

  it("an error reply is the runtime's refusal, with createdump's message when the command carries one", async () => {
    const text = Buffer.from('Problem suspending threads\0', 'utf16le');
    const f = await fake((_r, s) =>
      s.end(
        Buffer.concat([
          header(20 + 8 + text.length, 0xff, 0xff),
          Buffer.from([0x05, 0x15, 0x13, 0x80]),
          u32(text.length / 2),
          text,
        ]),
      ),
    );
    const e = await request(f.path, pid, 'GenerateCoreDump3', encodeMessage(1, 3), {
      withMessage: true,
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DotnetRuntimeError);
    expect(e).toMatchObject({ hresult: 0x80131505, runtimeMessage: 'Problem suspending threads' });
    await f.close();
  });

  it('ProcessInfo2 unknown to an old runtime falls back to ProcessInfo; a string past the payload is malformed', async () => {
    const info = Buffer.concat([
      i64(7n),
      Buffer.alloc(16),
      u32(2),
      utf16z('x'),
      u32(6),
      utf16z('Linux'),
      u32(4),
      utf16z('x64'),
    ]);
    const f = await fake((r, s) => {
      if (r[17] === 4) s.end(Buffer.concat([header(24, 0xff, 0xff), u32(0x80131385)]));
      else s.end(ok(info));
    });
    expect(await processInfo(f.path, pid)).toMatchObject({
      processId: 7,
      commandLine: 'x',
      os: 'Linux',
      arch: 'x64',
    });
    expect(f.requests.map((r) => r[17])).toEqual([4, 0]);
    const g = await fake((_r, s) =>
      s.end(ok(Buffer.concat([i64(7n), Buffer.alloc(16), u32(1000), utf16z('short')]))),
    );
    await expect(processInfo(g.path, pid)).rejects.toThrow(/ProcessInfo reply: a field needs 2000 bytes/);
    await Promise.all([f.close(), g.close()]);
  });

  it('an EventPipe stream with a corrupt block ends the session with DotnetProtocolError', async () => {
    const corrupt = Buffer.from(synth());
    corrupt.writeUInt32LE(0xdeadbeef, corrupt.indexOf(Buffer.from('EventBlock')) + 11);
    const f = await fake((_r, s) => {
      s.write(ok(i64(99n)));
      s.write(corrupt);
    });
    const events: TraceEvent[] = [];
    const session = await EventPipeSession.start({
      socketPath: f.path,
      pid,
      providers: [{ name: 'P', keywords: 1n, level: 4 }],
      onEvent: (e) => events.push(e),
    });
    expect(session.id).toBe(99n);
    await expect(session.ended).rejects.toBeInstanceOf(DotnetProtocolError);
    await session.stop(100);
    await f.close();
  });

  it('an EventPipe stream that ends cleanly resolves the session with its events', async () => {
    const f = await fake((_r, s) => s.end(Buffer.concat([ok(i64(5n)), synth()])));
    const events: TraceEvent[] = [];
    const session = await EventPipeSession.start({
      socketPath: f.path,
      pid,
      providers: [{ name: 'P', keywords: 1n, level: 4 }],
      onEvent: (e) => events.push(e),
    });
    await session.ended;
    expect(events.map((e) => e.metadata.eventName)).toEqual(['Tick', 'Tick', 'Tick']);
    await f.close();
  });
});

describe('session sharing and switch values', () => {
  it('merges providers into the union every subscriber needs, and knows when a session covers a need', () => {
    const a: Provider[] = [
      { name: 'R', keywords: 0x1n, level: 4 },
      { name: 'S', keywords: 0n, level: 4, args: { EventCounterIntervalSec: '5' } },
    ];
    const b: Provider[] = [
      { name: 'R', keywords: 0x8000n, level: 2 },
      { name: 'S', keywords: 0n, level: 5, args: { EventCounterIntervalSec: '1' } },
      { name: 'M', keywords: 3n, level: 4, args: { Metrics: 'A,B' } },
    ];
    const c: Provider[] = [{ name: 'M', keywords: 3n, level: 4, args: { Metrics: 'B,C' } }];
    const u = mergeProviders([a, b, c]);
    expect(u).toEqual([
      { name: 'R', keywords: 0x8001n, level: 4, args: {} },
      { name: 'S', keywords: 0n, level: 5, args: { EventCounterIntervalSec: '1' } },
      { name: 'M', keywords: 3n, level: 4, args: { Metrics: 'A,B,C' } },
    ]);
    for (const need of [a, b, c]) expect(coversProviders(u, need)).toBe(true);
    expect(coversProviders(mergeProviders([a]), b)).toBe(false);
    expect(coversProviders(u, [{ name: 'M', keywords: 3n, level: 4, args: { Metrics: 'D' } }])).toBe(false);
  });

  it('parses -gcm, -pc and ProcDump wildcards', () => {
    expect(parseGcm('100,200')).toEqual({ heap: 'total', thresholdsMB: [100, 200] });
    expect(parseGcm('gen2:50')).toEqual({ heap: 2, thresholdsMB: [50] });
    expect(parseGcm('LOH:10')).toEqual({ heap: 'loh', thresholdsMB: [10] });
    expect(() => parseGcm('10,x')).toThrow(/-gcm needs/);
    expect(parseCounterSpec('Microsoft.AspNetCore.Hosting:http.server.request.duration[p95]', '-pc')).toEqual(
      {
        provider: 'Microsoft.AspNetCore.Hosting',
        counter: 'http.server.request.duration',
        percentile: 'p95',
      },
    );
    expect(() => parseCounterSpec('System.Runtime', '-pc')).toThrow(/PROVIDER:COUNTER/);
    expect(wildcardMatch('System.InvalidOperationException: bad', '*invalid*')).toBe(true);
    expect(wildcardMatch('System.InvalidOperationException', 'System.*Exception')).toBe(true);
    expect(wildcardMatch('System.InvalidOperationException', 'Invalid*')).toBe(false);
    expect(wildcardMatch('a.b(c)', 'a.b(c)')).toBe(true);
    expect(parseQuantiles('0.5=1.5;0.95=3;0.99=7.25')).toEqual({ p50: 1.5, p95: 3, p99: 7.25 });
  });
});
