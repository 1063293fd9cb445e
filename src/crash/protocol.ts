// The crash notification protocol (docs/crash.md): what tripdump-crash-handler sends to a daemon's
// AF_UNIX stream socket after each crash, and a listener that decodes it. Little-endian throughout.
//   header  u32 cmd (1 = crash), u32 msgSize (bytes of body that follow, at most 65536)
//   body    u16 version, u16 flags, u32 pid, nsPid, uid, gid, signal, dumpable, u32 fixedSize,
//           u64 time, coreSize, coreAllocated, captureNs   (fixedSize = 64 in version 1)
//           then TLVs {u16 type, u16 length, bytes} up to msgSize; unknown types are skipped.
import { EventEmitter } from 'node:events';
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { SystemError } from '../errors.js';

export const CMD_CRASH = 1;
export const PROTOCOL_VERSION = 1;
export const HEADER_SIZE = 8;
export const FIXED_SIZE = 64;
export const MAX_BODY = 65536;
/** Where the handler notifies unless its config says otherwise. */
export const DEFAULT_SOCKET = '/run/tripdump/crash.sock';

export const FLAGS = { coreStored: 1, metadataStored: 2, socketMode: 4, coreSkipped: 8 } as const;
export const TLV = {
  exeName: 1,
  hostname: 2,
  exePath: 3,
  coreFile: 4,
  metadataFile: 5,
  id: 6,
  error: 7,
} as const;

/** One crash, as the handler reported it. Strings are untrusted (the crashing process chose its name). */
export interface CrashInfo {
  version: number;
  flags: number;
  /** Pid in the initial pid namespace (%P). */
  pid: number;
  /** Pid as the process saw it (%p). */
  nsPid: number;
  uid: number;
  gid: number;
  signal: number;
  dumpable: number;
  time: Date;
  coreSize: number;
  coreAllocated: number;
  /** From the handler's start to the core file complete, in milliseconds. */
  captureMs: number;
  /** %e, decoded as UTF-8 with replacement characters; exeNameRaw keeps the exact bytes. */
  exeName: string;
  exeNameRaw: Buffer;
  hostname: string;
  exePath: string;
  coreFile: string | undefined;
  metadataFile: string | undefined;
  id: string;
  error: string | undefined;
  coreStored: boolean;
  socketMode: boolean;
}

export type CrashFields = Pick<CrashInfo, 'pid' | 'uid' | 'gid' | 'signal'> &
  Partial<Omit<CrashInfo, 'version' | 'exeNameRaw' | 'coreStored' | 'socketMode'>>;

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

/** One framed message (header + body), as the handler writes it. */
export function encodeCrash(info: CrashFields): Buffer {
  const fixed = Buffer.alloc(FIXED_SIZE);
  fixed.writeUInt16LE(PROTOCOL_VERSION, 0);
  fixed.writeUInt16LE(info.flags ?? 0, 2);
  const u32 = [
    info.pid,
    info.nsPid ?? info.pid,
    info.uid,
    info.gid,
    info.signal,
    info.dumpable ?? 1,
    FIXED_SIZE,
  ];
  u32.forEach((v, i) => {
    fixed.writeUInt32LE(v, 4 + 4 * i);
  });
  const time = BigInt(Math.floor((info.time ?? new Date()).getTime() / 1000));
  fixed.writeBigUInt64LE(time, 32);
  fixed.writeBigUInt64LE(BigInt(info.coreSize ?? 0), 40);
  fixed.writeBigUInt64LE(BigInt(info.coreAllocated ?? 0), 48);
  fixed.writeBigUInt64LE(BigInt(Math.round((info.captureMs ?? 0) * 1e6)), 56);
  const tlvs: Buffer[] = [];
  const add = (type: number, value: string | undefined) => {
    if (!value) return;
    const bytes = Buffer.from(value, 'utf8').subarray(0, 4096);
    const head = Buffer.alloc(4);
    head.writeUInt16LE(type, 0);
    head.writeUInt16LE(bytes.length, 2);
    tlvs.push(head, bytes);
  };
  add(TLV.exeName, info.exeName);
  add(TLV.hostname, info.hostname);
  add(TLV.exePath, info.exePath);
  add(TLV.coreFile, info.coreFile);
  add(TLV.metadataFile, info.metadataFile);
  add(TLV.id, info.id);
  add(TLV.error, info.error);
  const body = Buffer.concat([fixed, ...tlvs]);
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt32LE(CMD_CRASH, 0);
  header.writeUInt32LE(body.length, 4);
  return Buffer.concat([header, body]);
}

/** Decodes one body (without its header). Throws ProtocolError when it is malformed. */
export function decodeCrash(body: Buffer): CrashInfo {
  if (body.length < 32) throw new ProtocolError(`crash body too short (${body.length} bytes)`);
  const version = body.readUInt16LE(0);
  if (version < 1) throw new ProtocolError(`unsupported protocol version ${version}`);
  const fixedSize = body.readUInt32LE(28);
  // A later version may grow the fixed part; its first 64 bytes keep their meaning.
  if (fixedSize < FIXED_SIZE || fixedSize > body.length)
    throw new ProtocolError(`bad fixed size ${fixedSize} in a ${body.length}-byte body`);
  const strings = new Map<number, Buffer>();
  let off = fixedSize;
  while (off < body.length) {
    if (off + 4 > body.length) throw new ProtocolError(`truncated TLV header at ${off}`);
    const type = body.readUInt16LE(off);
    const len = body.readUInt16LE(off + 2);
    if (off + 4 + len > body.length) throw new ProtocolError(`TLV ${type} runs past the body`);
    strings.set(type, body.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
  const text = (t: number) => strings.get(t)?.toString('utf8');
  const flags = body.readUInt16LE(2);
  return {
    version,
    flags,
    pid: body.readUInt32LE(4),
    nsPid: body.readUInt32LE(8),
    uid: body.readUInt32LE(12),
    gid: body.readUInt32LE(16),
    signal: body.readUInt32LE(20),
    dumpable: body.readUInt32LE(24),
    time: new Date(Number(body.readBigUInt64LE(32)) * 1000),
    coreSize: Number(body.readBigUInt64LE(40)),
    coreAllocated: Number(body.readBigUInt64LE(48)),
    captureMs: Number(body.readBigUInt64LE(56)) / 1e6,
    exeName: text(TLV.exeName) ?? '',
    exeNameRaw: Buffer.from(strings.get(TLV.exeName) ?? Buffer.alloc(0)),
    hostname: text(TLV.hostname) ?? '',
    exePath: text(TLV.exePath) ?? '',
    coreFile: text(TLV.coreFile),
    metadataFile: text(TLV.metadataFile),
    id: text(TLV.id) ?? '',
    error: text(TLV.error),
    coreStored: (flags & FLAGS.coreStored) !== 0,
    socketMode: (flags & FLAGS.socketMode) !== 0,
  };
}

/**
 * Splits a byte stream into messages. Returns the decoded crashes and the unconsumed tail; throws
 * ProtocolError on an oversized or malformed frame (the connection should then be dropped).
 */
export function decodeFrames(buf: Buffer): { messages: { cmd: number; body: Buffer }[]; rest: Buffer } {
  const messages: { cmd: number; body: Buffer }[] = [];
  let off = 0;
  while (buf.length - off >= HEADER_SIZE) {
    const cmd = buf.readUInt32LE(off);
    const size = buf.readUInt32LE(off + 4);
    if (size > MAX_BODY) throw new ProtocolError(`message of ${size} bytes is over the ${MAX_BODY} limit`);
    if (buf.length - off - HEADER_SIZE < size) break;
    messages.push({ cmd, body: buf.subarray(off + HEADER_SIZE, off + HEADER_SIZE + size) });
    off += HEADER_SIZE + size;
  }
  return { messages, rest: buf.subarray(off) };
}

export interface CrashListenerEvents {
  crash: [CrashInfo];
  /** A connection sent something that is not a valid message (it was dropped); the listener goes on. */
  warning: [Error];
  error: [Error];
}

/**
 * Listens on the handler's notification socket and emits a 'crash' event per message. The socket is
 * created mode 0600 in a folder created mode 0700 when missing: whoever can connect can claim a crash.
 */
export class CrashListener extends EventEmitter<CrashListenerEvents> {
  readonly path: string;
  #server: net.Server | undefined;
  #sockets = new Set<net.Socket>();

  constructor(socketPath: string = DEFAULT_SOCKET) {
    super();
    this.path = path.resolve(socketPath);
  }

  async listen(): Promise<void> {
    mkdirSync(path.dirname(this.path), { recursive: true, mode: 0o700 });
    await this.#removeStale();
    const server = net.createServer((sock) => this.#accept(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new SystemError({
            errno: e.errno ?? 0,
            code: e.code ?? 'EIO',
            syscall: e.syscall ?? 'listen',
            path: this.path,
          }),
        ),
      );
      server.listen(this.path, () => resolve());
    });
    chmodSync(this.path, 0o600);
    server.on('error', (e) => this.emit('error', e));
    this.#server = server;
  }

  /** A socket file left by a daemon that died is removed; one that answers belongs to a live daemon. */
  async #removeStale(): Promise<void> {
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(this.path);
    } catch {
      return;
    }
    if (!st.isSocket())
      throw new SystemError(
        { errno: -17, code: 'EEXIST', syscall: 'bind', path: this.path },
        `${this.path} exists and is not a socket`,
      );
    const alive = await new Promise<boolean>((resolve) => {
      const c = net.connect(this.path);
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (alive)
      throw new SystemError(
        { errno: -98, code: 'EADDRINUSE', syscall: 'bind', path: this.path },
        `another listener is already on ${this.path}`,
      );
    unlinkSync(this.path);
  }

  #accept(sock: net.Socket): void {
    this.#sockets.add(sock);
    let buf: Buffer = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      try {
        const { messages, rest } = decodeFrames(buf);
        buf = Buffer.from(rest);
        for (const m of messages) {
          if (m.cmd === CMD_CRASH) this.emit('crash', decodeCrash(m.body));
          // Other commands are reserved for later versions: skipped.
        }
      } catch (e) {
        this.emit('warning', e as Error);
        sock.destroy();
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => this.#sockets.delete(sock));
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
