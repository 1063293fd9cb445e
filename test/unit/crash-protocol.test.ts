// The notification protocol: encode/decode, framing across chunk boundaries, malformed input, the
// listener on a real socket, and the trigger's filters.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type CrashInfo,
  CrashListener,
  decodeCrash,
  decodeFrames,
  encodeCrash,
  HEADER_SIZE,
  ProtocolError,
} from '../../src/crash/protocol.js';
import { CrashTrigger, matchesCrash } from '../../src/crash/trigger.js';

const sample = {
  pid: 4242,
  nsPid: 7,
  uid: 1000,
  gid: 100,
  signal: 11,
  exeName: 'crasher',
  exePath: '/opt/app/bin/crasher',
  hostname: 'box',
  coreFile: '/var/lib/tripdump/crashes/crasher_4242_1700000000.core',
  id: 'crasher_4242_1700000000',
  time: new Date(1_700_000_000_000),
  coreSize: 16 << 20,
  flags: 3,
};

let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});
function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'tripdump-proto-'));
  dirs.push(d);
  return d;
}

describe('crash protocol', () => {
  it('round-trips every field', () => {
    const msg = encodeCrash(sample);
    expect(msg.readUInt32LE(0)).toBe(1);
    expect(msg.readUInt32LE(4)).toBe(msg.length - HEADER_SIZE);
    const info = decodeCrash(msg.subarray(HEADER_SIZE));
    expect(info).toMatchObject({ ...sample, coreStored: true, socketMode: false, version: 1, dumpable: 1 });
    expect(info.exeNameRaw.toString()).toBe('crasher');
  });

  it('splits frames across arbitrary chunk boundaries and keeps the tail', () => {
    const two = Buffer.concat([encodeCrash(sample), encodeCrash({ ...sample, pid: 5 })]);
    const cut = 13;
    const first = decodeFrames(two.subarray(0, cut));
    expect(first.messages).toHaveLength(0);
    const all = decodeFrames(two);
    expect(all.messages.map((m) => decodeCrash(m.body).pid)).toEqual([4242, 5]);
    expect(all.rest.length).toBe(0);
  });

  it('rejects oversized and malformed messages', () => {
    const big = Buffer.alloc(8);
    big.writeUInt32LE(1, 0);
    big.writeUInt32LE(1 << 20, 4);
    expect(() => decodeFrames(big)).toThrow(ProtocolError);
    const body = encodeCrash(sample).subarray(HEADER_SIZE);
    expect(() => decodeCrash(body.subarray(0, 20))).toThrow(ProtocolError);
    const badTlv = Buffer.from(body);
    badTlv.writeUInt16LE(60000, 64 + 2);
    expect(() => decodeCrash(badTlv)).toThrow(ProtocolError);
  });

  it('skips unknown TLVs and a longer fixed part (forward compatibility)', () => {
    const body = encodeCrash(sample).subarray(HEADER_SIZE);
    const grown = Buffer.concat([
      body.subarray(0, 64),
      Buffer.alloc(16, 0xee),
      Buffer.from([99, 0, 2, 0, 1, 2]),
      body.subarray(64),
    ]);
    grown.writeUInt32LE(80, 28);
    expect(decodeCrash(grown)).toMatchObject({ pid: 4242, exeName: 'crasher', id: sample.id });
  });

  it('keeps non-UTF-8 names byte for byte', () => {
    const msg = encodeCrash(sample);
    const body = Buffer.from(msg.subarray(HEADER_SIZE));
    // First TLV is the exe name: overwrite its first byte with an invalid UTF-8 byte.
    body[64 + 4] = 0xff;
    const info = decodeCrash(body);
    expect(info.exeNameRaw[0]).toBe(0xff);
    expect(info.exeName.startsWith('\ufffd')).toBe(true);
  });

  it('CrashListener emits crashes sent in pieces, and drops a bad connection but goes on', async () => {
    const sock = path.join(tmp(), 'n.sock');
    const listener = new CrashListener(sock);
    await listener.listen();
    try {
      const got: CrashInfo[] = [];
      const warnings: Error[] = [];
      listener.on('crash', (c) => got.push(c));
      listener.on('warning', (e) => warnings.push(e));
      const bad = net.connect(sock);
      await new Promise((r) => bad.once('connect', r));
      const header = Buffer.alloc(8);
      header.writeUInt32LE(1, 0);
      header.writeUInt32LE(0xffffffff, 4);
      bad.write(header);
      const msg = encodeCrash(sample);
      const c = net.connect(sock);
      await new Promise((r) => c.once('connect', r));
      c.write(msg.subarray(0, 10));
      await new Promise((r) => setTimeout(r, 20));
      c.end(msg.subarray(10));
      await vi.waitFor(() => expect(got).toHaveLength(1));
      expect(got[0]).toMatchObject({ pid: 4242, signal: 11 });
      await vi.waitFor(() => expect(warnings).toHaveLength(1));
      bad.destroy();
    } finally {
      await listener.close();
    }
  });

  it('refuses a socket another listener owns, replaces a stale one', async () => {
    const sock = path.join(tmp(), 'n.sock');
    const a = new CrashListener(sock);
    await a.listen();
    await expect(new CrashListener(sock).listen()).rejects.toMatchObject({ code: 'EADDRINUSE' });
    // A listener killed without close() leaves its socket file: simulated by a bare server.
    await a.close();
    const stale = net.createServer();
    await new Promise<void>((r) => stale.listen(sock, r));
    // Keep the file but stop accepting: close() unlinks it, so re-create a dead socket file by hand.
    await new Promise<void>((r) => stale.close(() => r()));
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(sock, r));
    (dead as unknown as { _handle: { close(): void } | null })._handle?.close();
    const b = new CrashListener(sock);
    await b.listen();
    await b.close();
  });
});

describe('crash trigger filters', () => {
  const info = decodeCrash(encodeCrash(sample).subarray(HEADER_SIZE));
  it('match by exe name, path basename, regex, uid and signal', () => {
    expect(matchesCrash(info, {})).toBe(true);
    expect(matchesCrash(info, { exe: 'crasher' })).toBe(true);
    expect(matchesCrash(info, { exe: /^crash/ })).toBe(true);
    expect(matchesCrash(info, { exe: 'other' })).toBe(false);
    expect(matchesCrash(info, { uids: [0] })).toBe(false);
    expect(matchesCrash(info, { uids: [1000], signals: [11, 6] })).toBe(true);
    expect(matchesCrash(info, { signals: [6] })).toBe(false);
  });

  it('subscribe delivers filtered crashes until aborted', async () => {
    const sock = path.join(tmp(), 'n.sock');
    const trigger = new CrashTrigger({ socketPath: sock, signals: [11] });
    const ctl = new AbortController();
    const got: number[] = [];
    trigger.subscribe((c) => got.push(c.pid), ctl.signal);
    await trigger.ready;
    for (const [pid, signal] of [
      [1, 6],
      [2, 11],
    ] as const) {
      const c = net.connect(sock);
      await new Promise((r) => c.once('connect', r));
      c.end(encodeCrash({ ...sample, pid, signal }));
    }
    await vi.waitFor(() => expect(got).toEqual([2]));
    ctl.abort();
    await vi.waitFor(() => expect(() => net.connect(sock).destroy()).not.toThrow());
  });
});
