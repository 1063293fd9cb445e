// The diagnostics IPC protocol (dotnet/diagnostics documentation/design-docs/ipc-protocol.md): one command
// per connection; a 20-byte header (magic "DOTNET_IPC_V1\0", u16 size, command set, command id, u16 0),
// then the payload; replies are Server OK (ff 00) or Server Error (ff ff + HRESULT). Every length read from
// the peer is checked against what arrived: a short or inconsistent frame is a DotnetProtocolError.
import net from 'node:net';
import { AbortError, AccessDeniedError, ProcessGoneError, SystemError } from '../../errors.js';
import {
  DotnetProtocolError,
  DotnetRuntimeError,
  DotnetTimeoutError,
  DotnetUnavailableError,
  HRESULT,
} from './errors.js';
import { checkPeer, connectablePath } from './socket.js';

export const MAGIC = Buffer.from('DOTNET_IPC_V1\0', 'latin1');
export const HEADER_SIZE = 20;

export const CommandSet = { dump: 0x01, eventPipe: 0x02, process: 0x04, server: 0xff } as const;
export const Command = {
  generateCoreDump: 0x01,
  generateCoreDump2: 0x02,
  generateCoreDump3: 0x03,
  stopTracing: 0x01,
  collectTracing2: 0x03,
  collectTracing3: 0x04,
  processInfo: 0x00,
  processInfo2: 0x04,
  ok: 0x00,
  error: 0xff,
} as const;

/** Payload encoding: little-endian integers, strings as u32 length (UTF-16 units with the NUL) + UTF-16LE. */
export class PayloadWriter {
  readonly #parts: Buffer[] = [];
  u8(v: number): this {
    this.#parts.push(Buffer.from([v & 0xff]));
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.#parts.push(b);
    return this;
  }
  u64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, v));
    this.#parts.push(b);
    return this;
  }
  string(s: string | undefined): this {
    if (!s) return this.u32(0);
    this.u32(s.length + 1);
    this.#parts.push(Buffer.from(`${s}\0`, 'utf16le'));
    return this;
  }
  bytes(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

/** Reads a payload field by field; a field that runs past the end is a DotnetProtocolError. */
export class PayloadReader {
  #at = 0;
  constructor(
    readonly buf: Buffer,
    readonly pid: number | undefined,
    readonly what: string,
  ) {}
  get offset(): number {
    return this.#at;
  }
  get remaining(): number {
    return this.buf.length - this.#at;
  }
  #need(n: number): void {
    if (n < 0 || this.#at + n > this.buf.length)
      throw new DotnetProtocolError(
        this.pid,
        `${this.what}: a field needs ${n} bytes at offset ${this.#at}, ${this.buf.length - this.#at} left`,
      );
  }
  u32(): number {
    this.#need(4);
    const v = this.buf.readUInt32LE(this.#at);
    this.#at += 4;
    return v;
  }
  u64(): bigint {
    this.#need(8);
    const v = this.buf.readBigUInt64LE(this.#at);
    this.#at += 8;
    return v;
  }
  skip(n: number): void {
    this.#need(n);
    this.#at += n;
  }
  guid(): string {
    this.#need(16);
    const h = this.buf.subarray(this.#at, this.#at + 16).toString('hex');
    this.#at += 16;
    return h;
  }
  string(): string {
    const units = this.u32();
    if (units === 0) return '';
    this.#need(units * 2);
    const s = this.buf.toString('utf16le', this.#at, this.#at + units * 2);
    this.#at += units * 2;
    return s.endsWith('\0') ? s.slice(0, -1) : s;
  }
}

export function encodeMessage(
  commandSet: number,
  commandId: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const size = HEADER_SIZE + payload.length;
  if (size > 0xffff) throw new RangeError(`an IPC message holds at most 65,535 bytes, this one ${size}`);
  const header = Buffer.alloc(HEADER_SIZE);
  MAGIC.copy(header, 0);
  header.writeUInt16LE(size, 14);
  header[16] = commandSet;
  header[17] = commandId;
  return Buffer.concat([header, payload]);
}

export interface Reply {
  commandSet: number;
  commandId: number;
  payload: Buffer;
}

export interface RequestOptions {
  signal?: AbortSignal | undefined;
  /** How long to wait for the reply (default 10 s). */
  timeoutMs?: number | undefined;
}

/**
 * One IPC exchange on a fresh connection. Resolves with the reply and the still-open socket (for commands
 * that continue with a stream) plus the bytes that arrived after the reply; the caller owns the socket.
 */
export async function exchange(
  socketPath: string,
  pid: number,
  commandName: string,
  message: Buffer,
  options: RequestOptions = {},
): Promise<{ reply: Reply; socket: net.Socket; rest: Buffer }> {
  const { signal } = options;
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (signal?.aborted) throw new AbortError(`${commandName} for process ${pid} was aborted`);
  const target = connectablePath(socketPath);
  const socket = net.createConnection({ path: target.path });
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    let settled = false;
    const finish = (err: Error | undefined, value?: { reply: Reply; socket: net.Socket; rest: Buffer }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve(value!);
    };
    const onAbort = () => finish(new AbortError(`${commandName} for process ${pid} was aborted`));
    const timer = setTimeout(() => finish(new DotnetTimeoutError(pid, commandName, timeoutMs)), timeoutMs);
    const onError = (e: NodeJS.ErrnoException) => finish(connectError(e, pid, socketPath));
    const onClose = () =>
      finish(
        new DotnetProtocolError(
          pid,
          buffered.length
            ? `the connection closed in the middle of the reply to ${commandName} (${buffered.length} bytes of a frame)`
            : `the runtime closed the connection without answering ${commandName}`,
        ),
      );
    const onData = (chunk: Buffer) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      let header: { size: number; commandSet: number; commandId: number } | undefined;
      try {
        header = parseHeader(buffered, pid);
      } catch (e) {
        finish(e as Error);
        return;
      }
      if (!header || buffered.length < header.size) return;
      finish(undefined, {
        reply: {
          commandSet: header.commandSet,
          commandId: header.commandId,
          payload: buffered.subarray(HEADER_SIZE, header.size),
        },
        socket,
        rest: buffered.subarray(header.size),
      });
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.once('connect', () => {
      target.release();
      try {
        checkPeer(socket, pid, socketPath);
      } catch (e) {
        finish(e as Error);
        return;
      }
      socket.write(message);
    });
    socket.once('error', () => target.release());
  });
}

/** The header of a reply once 20 bytes are there (undefined before); throws on a bad magic or size. */
export function parseHeader(
  buf: Buffer,
  pid: number | undefined,
): { size: number; commandSet: number; commandId: number } | undefined {
  const n = Math.min(buf.length, MAGIC.length);
  if (!buf.subarray(0, n).equals(MAGIC.subarray(0, n)))
    throw new DotnetProtocolError(
      pid,
      `the reply does not start with DOTNET_IPC_V1 (got ${JSON.stringify(buf.subarray(0, n).toString('latin1'))})`,
    );
  if (buf.length < HEADER_SIZE) return undefined;
  const size = buf.readUInt16LE(14);
  if (size < HEADER_SIZE)
    throw new DotnetProtocolError(
      pid,
      `a reply header says its frame is ${size} bytes, less than the header itself`,
    );
  return { size, commandSet: buf[16]!, commandId: buf[17]! };
}

export function connectError(e: NodeJS.ErrnoException, pid: number, socketPath: string): Error {
  const info = {
    errno: e.errno ?? -1,
    code: e.code ?? 'EIO',
    syscall: e.syscall ?? 'connect',
    path: socketPath,
    pid,
  };
  switch (e.code) {
    case 'EACCES':
    case 'EPERM':
      return new AccessDeniedError(info);
    case 'ENOENT':
    case 'ECONNREFUSED':
      try {
        process.kill(pid, 0);
      } catch (k) {
        if ((k as NodeJS.ErrnoException).code === 'ESRCH') return new ProcessGoneError(info);
      }
      return new DotnetUnavailableError(
        pid,
        'no-socket',
        socketPath,
        `its diagnostics socket ${socketPath} does not accept connections (${e.code})`,
      );
    default:
      return new SystemError(info);
  }
}

/** Throws the runtime's error reply as a DotnetRuntimeError; `withMessage`: the payload may carry a text. */
export function checkReply(reply: Reply, pid: number, commandName: string, withMessage = false): void {
  if (reply.commandSet === CommandSet.server && reply.commandId === Command.ok) return;
  if (reply.commandSet === CommandSet.server && reply.commandId === Command.error) {
    const r = new PayloadReader(reply.payload, pid, `${commandName} error reply`);
    const hr = r.u32();
    let message: string | undefined;
    if (withMessage && r.remaining >= 4) message = r.string();
    throw new DotnetRuntimeError(pid, commandName, hr, message);
  }
  throw new DotnetProtocolError(
    pid,
    `unexpected reply ${reply.commandSet.toString(16)}/${reply.commandId.toString(16)} to ${commandName}`,
  );
}

export function isUnknownCommand(e: unknown): boolean {
  return e instanceof DotnetRuntimeError && e.hresult === HRESULT.unknownCommand;
}

/** A command whose whole answer is the reply (the socket is closed after it). */
export async function request(
  socketPath: string,
  pid: number,
  commandName: string,
  message: Buffer,
  options: RequestOptions & { withMessage?: boolean } = {},
): Promise<Buffer> {
  const { reply, socket } = await exchange(socketPath, pid, commandName, message, options);
  socket.destroy();
  checkReply(reply, pid, commandName, options.withMessage);
  return reply.payload;
}

export interface ProcessInfo {
  /** The pid inside the target's pid namespace. */
  processId: number;
  runtimeCookie: string;
  commandLine: string;
  os: string;
  arch: string;
  /** From ProcessInfo2 (.NET 6+). */
  managedEntrypointAssemblyName?: string;
  clrProductVersion?: string;
}

export function parseProcessInfo(payload: Buffer, pid: number | undefined, v2: boolean): ProcessInfo {
  const r = new PayloadReader(payload, pid, 'ProcessInfo reply');
  const processId = Number(r.u64());
  const runtimeCookie = r.guid();
  const info: ProcessInfo = {
    processId,
    runtimeCookie,
    commandLine: r.string(),
    os: r.string(),
    arch: r.string(),
  };
  if (v2) {
    info.managedEntrypointAssemblyName = r.string();
    info.clrProductVersion = r.string();
  }
  return info;
}

/** ProcessInfo2 (04 04), falling back to ProcessInfo (04 00) on runtimes before .NET 6. */
export async function processInfo(
  socketPath: string,
  pid: number,
  options: RequestOptions = {},
): Promise<ProcessInfo> {
  const ask = async (v2: boolean) => {
    const msg = encodeMessage(CommandSet.process, v2 ? Command.processInfo2 : Command.processInfo);
    return parseProcessInfo(
      await request(socketPath, pid, v2 ? 'ProcessInfo2' : 'ProcessInfo', msg, options),
      pid,
      v2,
    );
  };
  try {
    return await ask(true);
  } catch (e) {
    if (!isUnknownCommand(e)) throw e;
  }
  return ask(false);
}
