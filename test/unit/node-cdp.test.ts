// The CDP session's handling of what a peer sends (src/runtimes/node/cdp.ts), against a real WebSocket
// server (ws) playing a misbehaving inspector: replies and events are routed, an error reply is a typed
// error, and anything that is not CDP (binary, not JSON, not an object, neither id nor method, too large,
// random bytes) ends that session with NodeInspectorError('protocol') and nothing else.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';
import { CdpSession } from '../../src/runtimes/node/cdp.js';
import { NodeInspectorError } from '../../src/runtimes/node/errors.js';

type Handler = (ws: WebSocket, message: { id: number; method: string }) => void;
let server: WebSocketServer;
let port = 0;
let handler: Handler = () => {};

beforeAll(async () => {
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => server.once('listening', r));
  port = (server.address() as net.AddressInfo).port;
  server.on('connection', (ws) => ws.on('message', (d) => handler(ws, JSON.parse(d.toString()))));
});
afterAll(() => new Promise((r) => server.close(r)));

function connect(maxMessageBytes?: number): Promise<CdpSession> {
  const socket = net.connect(port, '127.0.0.1');
  return CdpSession.connect(`ws://127.0.0.1:${port}/x`, socket, {
    pid: 42,
    timeoutMs: 5000,
    ...(maxMessageBytes ? { maxMessageBytes } : {}),
  });
}

describe('CdpSession', () => {
  it('routes replies by id, events by method, and turns error replies into typed errors', async () => {
    handler = (ws, m) => {
      if (m.method === 'Bad.call')
        ws.send(JSON.stringify({ id: m.id, error: { code: -32601, message: 'nope' } }));
      else {
        ws.send(JSON.stringify({ method: 'Some.event', params: { n: m.id } }));
        ws.send(JSON.stringify({ id: 9999, result: {} })); // nobody asked: dropped
        ws.send(JSON.stringify({ id: m.id, result: { echo: m.method } }));
      }
    };
    const s = await connect();
    const events: unknown[] = [];
    const off = s.on('Some.event', (p) => events.push(p.n));
    expect(await s.send('A.b')).toEqual({ echo: 'A.b' });
    const e = await s.send('Bad.call').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NodeInspectorError);
    expect((e as NodeInspectorError).reason).toBe('protocol');
    expect((e as NodeInspectorError).code).toBe(-32601);
    expect(events).toEqual([1]);
    off();
    await s.send('A.c');
    expect(events).toEqual([1]);
    expect(s.open).toBe(true);
    await s.close();
    expect(s.open).toBe(false);
  });

  it('a request the peer never answers times out, the session goes on', async () => {
    handler = (ws, m) => {
      if (m.method !== 'Silent.call') ws.send(JSON.stringify({ id: m.id, result: {} }));
    };
    const s = await connect();
    const e = await s.send('Silent.call', {}, { timeoutMs: 100 }).catch((x: unknown) => x);
    expect((e as NodeInspectorError).reason).toBe('timeout');
    expect(await s.send('Other.call')).toEqual({});
    await s.close();
  });

  const malformed: [string, (ws: WebSocket, id: number) => void][] = [
    ['a binary frame', (ws) => ws.send(Buffer.from([1, 2, 3]), { binary: true })],
    ['text that is not JSON', (ws) => ws.send('{"id": 1, "result":')],
    ['JSON that is not an object', (ws) => ws.send('[1, 2]')],
    ['an object with neither id nor method', (ws) => ws.send('{"result": {}}')],
    [
      'a frame larger than the limit',
      (ws, id) => ws.send(JSON.stringify({ id, result: { big: 'x'.repeat(4096) } })),
    ],
  ];
  for (const [what, send] of malformed)
    it(`ends the session on ${what}, rejecting what is pending`, async () => {
      handler = (ws, m) => send(ws, m.id);
      const s = await connect(1024);
      const e = await s.send('Any.call').catch((x: unknown) => x);
      expect(e).toBeInstanceOf(NodeInspectorError);
      await s.closed;
      expect(s.error).toBeInstanceOf(NodeInspectorError);
      expect((s.error as NodeInspectorError).reason).toBe('protocol');
      expect(s.open).toBe(false);
      const after = await s.send('Later.call').catch((x: unknown) => x);
      expect(after).toBeInstanceOf(NodeInspectorError);
    });

  it('survives random bytes: every session ends or answers, nothing throws out of it', async () => {
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let round = 0; round < 100; round++) {
      const bytes = Buffer.alloc(rand() % 200, 0);
      for (let i = 0; i < bytes.length; i++) bytes[i] = rand() & 0xff;
      const asText = round % 2 === 0;
      handler = (ws, m) => {
        ws.send(asText ? bytes.toString('latin1') : bytes, { binary: !asText });
        ws.send(JSON.stringify({ id: m.id, result: {} }));
      };
      const s = await connect();
      const r = await s.send('Fuzz.call').catch((x: unknown) => x);
      if (r instanceof Error) expect(r).toBeInstanceOf(NodeInspectorError);
      else expect(r).toEqual({});
      await s.close();
    }
  });
});
