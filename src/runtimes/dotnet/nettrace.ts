// A streaming reader of the nettrace format (versions 4 and 5, what EventPipe streams over the diagnostics
// socket: microsoft/perfview src/TraceEvent/EventPipe/NetTraceFormat_v5.md). Bytes are pushed as they
// arrive; each top-level object is parsed once it is whole. Bounded: an object larger than maxBlockBytes,
// a length that runs past its block, a nesting too deep or an unknown header is a DotnetProtocolError
// (nothing is allocated from an untrusted length first). Blocks of unknown types, stacks and sequence
// points are skipped by their size; metadata defines the payload layouts, events are handed out with
// their metadata and raw payload (decoded on demand by events.ts).
import { plural } from '../../plural.js';
import { DotnetProtocolError } from './errors.js';

const NETTRACE_MAGIC = Buffer.from('Nettrace', 'latin1');
const SERIALIZATION = '!FastSerialization.1';
const TAG_NULL = 1;
const TAG_BEGIN_PRIVATE_OBJECT = 5;
const TAG_END_OBJECT = 6;
/** Bytes of the Trace object's fields (SYSTEMTIME, QPC sync/frequency, pointer size, pid, cpus, rate). */
const TRACE_FIELDS = 48;
const MAX_TYPE_NAME = 64;
const MAX_NESTING = 16;

/** The type codes of EventPipe payload fields (System.TypeCode, plus Array = 19). */
export const TypeCode = {
  object: 1,
  boolean: 3,
  char: 4,
  sbyte: 5,
  byte: 6,
  int16: 7,
  uint16: 8,
  int32: 9,
  uint32: 10,
  int64: 11,
  uint64: 12,
  single: 13,
  double: 14,
  decimal: 15,
  dateTime: 16,
  guid: 17,
  string: 18,
  array: 19,
} as const;

export interface FieldDef {
  name: string;
  type: number;
  /** For arrays: the element type. */
  elementType?: FieldDef;
  /** For objects: their fields. */
  fields?: FieldDef[];
}

export interface EventMetadata {
  id: number;
  provider: string;
  eventId: number;
  eventName: string;
  keywords: bigint;
  version: number;
  level: number;
  opcode?: number;
  /** Payload layout; empty for native runtime events, which send none. */
  fields: FieldDef[];
}

export interface TraceEvent {
  metadata: EventMetadata;
  /** ms since the epoch. */
  time: number;
  threadId: number;
  sequence: number;
  payload: Buffer;
}

export interface TraceInfo {
  version: number;
  pid: number;
  pointerSize: number;
  cpus: number;
  /** Wall-clock time of qpcSync, ms since the epoch. */
  syncTime: number;
  qpcSync: bigint;
  qpcFrequency: bigint;
}

/** Reads fields of one buffer; any read past `end` is a DotnetProtocolError naming `what`. */
export class Cursor {
  constructor(
    readonly buf: Buffer,
    public at: number,
    readonly end: number,
    readonly pid: number | undefined,
    readonly what: string,
  ) {
    if (end > buf.length || at > end)
      throw new DotnetProtocolError(pid, `${what}: bounds ${at}..${end} outside ${buf.length} bytes`);
  }
  get remaining(): number {
    return this.end - this.at;
  }
  need(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0 || this.at + n > this.end)
      throw new DotnetProtocolError(
        this.pid,
        `${this.what}: ${n} bytes wanted at offset ${this.at}, ${this.end - this.at} left`,
      );
  }
  u8(): number {
    this.need(1);
    return this.buf[this.at++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.buf.readInt32LE(this.at);
    this.at += 4;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64LE(this.at);
    this.at += 8;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.at);
    this.at += 8;
    return v;
  }
  f32(): number {
    this.need(4);
    const v = this.buf.readFloatLE(this.at);
    this.at += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleLE(this.at);
    this.at += 8;
    return v;
  }
  skip(n: number): void {
    this.need(n);
    this.at += n;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }
  /** A NUL-terminated UTF-16LE string. */
  utf16z(): string {
    let end = this.at;
    while (end + 1 < this.end && (this.buf[end] !== 0 || this.buf[end + 1] !== 0)) end += 2;
    if (end + 1 >= this.end)
      throw new DotnetProtocolError(this.pid, `${this.what}: unterminated string at offset ${this.at}`);
    const s = this.buf.toString('utf16le', this.at, end);
    this.at = end + 2;
    return s;
  }
  /** LEB128-style unsigned varint of at most `maxBytes` bytes. */
  varUint(maxBytes: number): bigint {
    let v = 0n;
    for (let i = 0; i < maxBytes; i++) {
      const b = this.u8();
      v |= BigInt(b & 0x7f) << BigInt(7 * i);
      if (!(b & 0x80)) return v;
    }
    throw new DotnetProtocolError(
      this.pid,
      `${this.what}: a variable-length integer runs past ${maxBytes} bytes`,
    );
  }
  varU32(): number {
    return Number(BigInt.asUintN(32, this.varUint(5)));
  }
  varU64(): bigint {
    return BigInt.asUintN(64, this.varUint(10));
  }
}

export interface NettraceOptions {
  pid?: number | undefined;
  /** Largest object accepted, bytes (default 16 MiB; the runtime writes blocks of ~100 KB). */
  maxBlockBytes?: number;
  onEvent(event: TraceEvent): void;
  onTrace?(info: TraceInfo): void;
}

interface HeaderState {
  metadataId: number;
  sequence: number;
  captureThreadId: bigint;
  processor: number;
  threadId: bigint;
  stackId: number;
  timestamp: bigint;
  payloadSize: number;
}

const freshState = (): HeaderState => ({
  metadataId: 0,
  sequence: 0,
  captureThreadId: 0n,
  processor: 0,
  threadId: 0n,
  stackId: 0,
  timestamp: 0n,
  payloadSize: 0,
});

export class NettraceParser {
  readonly #o: NettraceOptions;
  readonly #max: number;
  readonly #metadata = new Map<number, EventMetadata>();
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** Absolute stream offset of the first buffered byte (object bodies are 4-byte aligned in the stream). */
  #offset = 0;
  #stage: 'magic' | 'objects' | 'done' = 'magic';
  #trace: TraceInfo | undefined;

  constructor(options: NettraceOptions) {
    this.#o = options;
    this.#max = options.maxBlockBytes ?? 16 * 2 ** 20;
  }

  get trace(): TraceInfo | undefined {
    return this.#trace;
  }

  /** Whether the end-of-stream tag was read. */
  get complete(): boolean {
    return this.#stage === 'done';
  }

  /** Bytes received and not yet parsed (an incomplete object). */
  get pending(): number {
    return this.#buffered;
  }

  push(chunk: Buffer): void {
    if (this.#stage === 'done') {
      if (chunk.length) throw this.#error(`${chunk.length} bytes after the end of the stream`);
      return;
    }
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    let buf = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#buffered);
    let used = 0;
    try {
      for (;;) {
        const n = this.#step(buf, used);
        if (n === 0) break;
        used += n;
        if ((this.#stage as string) === 'done') {
          if (used < buf.length) throw this.#error(`${buf.length - used} bytes after the end of the stream`);
          break;
        }
      }
    } finally {
      this.#offset += used;
      buf = buf.subarray(used);
      this.#chunks = buf.length ? [buf] : [];
      this.#buffered = buf.length;
    }
  }

  #error(detail: string): DotnetProtocolError {
    return new DotnetProtocolError(this.#o.pid, `nettrace stream at byte ${this.#offset}: ${detail}`);
  }

  /** Parses one unit at `at` if it is all there; returns the bytes it used (0: wait for more). */
  #step(buf: Buffer, at: number): number {
    const avail = buf.length - at;
    if (this.#stage === 'magic') {
      const head = 8 + 4 + SERIALIZATION.length;
      const n = Math.min(avail, 8);
      if (!buf.subarray(at, at + n).equals(NETTRACE_MAGIC.subarray(0, n)))
        throw this.#error(
          `does not start with "Nettrace" (got ${JSON.stringify(buf.subarray(at, at + n).toString('latin1'))})`,
        );
      if (avail < 12) return 0;
      const len = buf.readUInt32LE(at + 8);
      if (len === 0)
        throw this.#error(
          'nettrace format version 6 or later is not supported (runtimes up to .NET 10 stream version 5)',
        );
      if (len !== SERIALIZATION.length) throw this.#error(`unknown serialization header length ${len}`);
      if (avail < head) return 0;
      if (buf.toString('latin1', at + 12, at + head) !== SERIALIZATION)
        throw this.#error(
          `unknown serialization header ${JSON.stringify(buf.toString('latin1', at + 12, at + head))}`,
        );
      this.#stage = 'objects';
      return head;
    }
    if (avail < 1) return 0;
    const tag = buf[at]!;
    if (tag === TAG_NULL) {
      this.#stage = 'done';
      return 1;
    }
    if (tag !== TAG_BEGIN_PRIVATE_OBJECT)
      throw this.#error(`expected an object (tag 5) or the end (tag 1), got tag ${tag}`);
    // Type header: 5 (object), 1 (null type-of-type), version, minimum reader version, name, 6.
    if (avail < 15) return 0;
    if (buf[at + 1] !== TAG_BEGIN_PRIVATE_OBJECT || buf[at + 2] !== TAG_NULL)
      throw this.#error(`malformed type header (tags ${buf[at + 1]}, ${buf[at + 2]})`);
    const version = buf.readInt32LE(at + 3);
    const minReader = buf.readInt32LE(at + 7);
    const nameLen = buf.readUInt32LE(at + 11);
    if (nameLen > MAX_TYPE_NAME)
      throw this.#error(`type name of ${nameLen} bytes (at most ${MAX_TYPE_NAME})`);
    const typeEnd = at + 15 + nameLen + 1;
    if (buf.length < typeEnd) return 0;
    const name = buf.toString('utf8', at + 15, at + 15 + nameLen);
    if (buf[typeEnd - 1] !== TAG_END_OBJECT)
      throw this.#error(`type header of ${name} does not end with tag 6`);
    if (name === 'Trace') {
      if (version < 4 || minReader > 5)
        throw this.#error(`Trace object version ${version} (reader ≥ ${minReader}) is not supported`);
      const end = typeEnd + TRACE_FIELDS + 1;
      if (buf.length < end) return 0;
      if (buf[end - 1] !== TAG_END_OBJECT) throw this.#error('the Trace object does not end with tag 6');
      this.#readTrace(buf, typeEnd, version);
      return end - at;
    }
    // Every other object: u32 size, zero padding to a 4-byte stream offset, the body, tag 6.
    if (buf.length < typeEnd + 4) return 0;
    const size = buf.readUInt32LE(typeEnd);
    if (size > this.#max) throw this.#error(`${name} block of ${size} bytes (at most ${this.#max})`);
    const afterSize = typeEnd + 4;
    const pad = (4 - ((this.#offset + afterSize) % 4)) % 4;
    const body = afterSize + pad;
    const end = body + size + 1;
    if (buf.length < end) return 0;
    if (buf[end - 1] !== TAG_END_OBJECT) throw this.#error(`${name} block does not end with tag 6`);
    if (name === 'MetadataBlock' || name === 'EventBlock')
      this.#readEventBlock(buf, body, body + size, name === 'MetadataBlock');
    // StackBlock, SPBlock and types this reader does not know: skipped by their size.
    return end - at;
  }

  #readTrace(buf: Buffer, at: number, version: number): void {
    const c = new Cursor(buf, at, at + TRACE_FIELDS, this.#o.pid, 'Trace object');
    const year = c.u16();
    const month = c.u16();
    c.u16(); // day of week
    const day = c.u16();
    const hour = c.u16();
    const minute = c.u16();
    const second = c.u16();
    const ms = c.u16();
    const qpcSync = c.i64();
    const qpcFrequency = c.i64();
    const pointerSize = c.i32();
    const pid = c.i32();
    const cpus = c.i32();
    if (qpcFrequency <= 0n) throw this.#error(`Trace object with a clock frequency of ${qpcFrequency}`);
    this.#trace = {
      version,
      pid,
      pointerSize,
      cpus,
      syncTime: Date.UTC(year, month - 1, day, hour, minute, second, ms),
      qpcSync,
      qpcFrequency,
    };
    this.#o.onTrace?.(this.#trace);
  }

  #readEventBlock(buf: Buffer, start: number, end: number, isMetadata: boolean): void {
    const kind = isMetadata ? 'MetadataBlock' : 'EventBlock';
    if (!this.#trace) throw this.#error(`${kind} before the Trace object`);
    const c = new Cursor(buf, start, end, this.#o.pid, kind);
    const headerSize = c.u16();
    const flags = c.u16();
    if (headerSize < 4 || headerSize > end - start)
      throw this.#error(`${kind} header of ${headerSize} bytes`);
    c.at = start + headerSize;
    const compressed = (flags & 1) !== 0;
    const prev = freshState();
    while (c.remaining > 0) {
      if (compressed) this.#compressedHeader(c, prev);
      else this.#plainHeader(c, prev, start);
      const payload = c.bytes(prev.payloadSize);
      if (!compressed) c.skip(Math.min(c.remaining, (4 - ((c.at - start) % 4)) % 4));
      if (isMetadata) {
        const m = this.#readMetadata(payload);
        this.#metadata.set(m.id, m);
        continue;
      }
      const metadata = this.#metadata.get(prev.metadataId);
      if (!metadata)
        throw this.#error(`an event refers to metadata ${prev.metadataId}, which was never defined`);
      const t = this.#trace;
      this.#o.onEvent({
        metadata,
        time:
          t.syncTime +
          (Number(BigInt.asIntN(64, prev.timestamp - t.qpcSync)) * 1000) / Number(t.qpcFrequency),
        threadId: Number(prev.threadId),
        sequence: prev.sequence,
        payload,
      });
    }
  }

  #compressedHeader(c: Cursor, s: HeaderState): void {
    const flags = c.u8();
    if (flags & 1) s.metadataId = c.varU32();
    if (flags & 2) {
      s.sequence = (s.sequence + c.varU32()) >>> 0;
      s.captureThreadId = c.varU64();
      s.processor = c.varU32();
    }
    if (s.metadataId !== 0) s.sequence = (s.sequence + 1) >>> 0;
    if (flags & 4) s.threadId = c.varU64();
    else if (flags & 2) s.threadId = s.captureThreadId;
    if (flags & 8) s.stackId = c.varU32();
    // Deltas between threads are not ordered: the sum wraps modulo 2^64, like the runtime's unsigned math.
    s.timestamp = BigInt.asUintN(64, s.timestamp + c.varU64());
    if (flags & 16) c.skip(16);
    if (flags & 32) c.skip(16);
    if (flags & 128) s.payloadSize = c.varU32();
  }

  #plainHeader(c: Cursor, s: HeaderState, blockStart: number): void {
    const size = c.i32();
    const after = c.at;
    if (size < 56 || size > c.remaining)
      throw this.#error(`an event of ${size} bytes in a block with ${c.remaining} left`);
    s.metadataId = c.i32() & 0x7fffffff;
    s.sequence = c.i32() >>> 0;
    s.threadId = c.u64();
    s.captureThreadId = c.u64();
    s.processor = c.i32();
    s.stackId = c.i32();
    s.timestamp = c.u64();
    c.skip(32);
    s.payloadSize = c.i32();
    if (s.payloadSize < 0 || after + size < c.at + s.payloadSize)
      throw this.#error(
        `an event payload of ${s.payloadSize} bytes overruns its event (${size} bytes at block offset ${after - blockStart})`,
      );
  }

  #readMetadata(payload: Buffer): EventMetadata {
    const c = new Cursor(payload, 0, payload.length, this.#o.pid, 'event metadata');
    const m: EventMetadata = {
      id: c.i32(),
      provider: c.utf16z(),
      eventId: c.i32(),
      eventName: c.utf16z(),
      keywords: c.i64(),
      version: c.i32(),
      level: c.i32(),
      fields: [],
    };
    if (m.id <= 0) throw this.#error(`metadata with id ${m.id}`);
    m.fields = readFieldsV1(c, 0);
    // Version 5 appends tags: u32 size, u8 kind, then the tag's bytes.
    while (c.remaining >= 5) {
      const size = c.i32();
      const kind = c.u8();
      c.need(size);
      const tag = new Cursor(payload, c.at, c.at + size, this.#o.pid, 'metadata tag');
      if (kind === 1) m.opcode = tag.u8();
      else if (kind === 2) m.fields = readFieldsV2(tag, 0);
      c.at += size;
    }
    return m;
  }
}

function readFieldsV1(c: Cursor, depth: number): FieldDef[] {
  if (depth > MAX_NESTING)
    throw new DotnetProtocolError(c.pid, `${c.what}: fields nested deeper than ${MAX_NESTING}`);
  const count = c.i32();
  if (count < 0 || count * 6 > c.remaining)
    throw new DotnetProtocolError(c.pid, `${c.what}: ${plural(count, 'field')} in ${c.remaining} bytes`);
  const fields: FieldDef[] = [];
  for (let i = 0; i < count; i++) {
    const type = c.i32();
    const nested = type === TypeCode.object ? readFieldsV1(c, depth + 1) : undefined;
    fields.push({ name: c.utf16z(), type, ...(nested ? { fields: nested } : {}) });
  }
  return fields;
}

function readTypeV2(c: Cursor, depth: number): Omit<FieldDef, 'name'> {
  const type = c.i32();
  if (type === TypeCode.array) return { type, elementType: { name: '', ...readTypeV2(c, depth + 1) } };
  if (type === TypeCode.object) return { type, fields: readFieldsV2(c, depth + 1) };
  return { type };
}

function readFieldsV2(c: Cursor, depth: number): FieldDef[] {
  if (depth > MAX_NESTING)
    throw new DotnetProtocolError(c.pid, `${c.what}: fields nested deeper than ${MAX_NESTING}`);
  const count = c.i32();
  if (count < 0 || count * 8 > c.remaining)
    throw new DotnetProtocolError(c.pid, `${c.what}: ${plural(count, 'field')} in ${c.remaining} bytes`);
  const fields: FieldDef[] = [];
  for (let i = 0; i < count; i++) {
    const start = c.at;
    const size = c.i32();
    if (size < 4 || size > c.remaining + 4)
      throw new DotnetProtocolError(c.pid, `${c.what}: a field definition of ${size} bytes`);
    const name = c.utf16z();
    fields.push({ name, ...readTypeV2(c, depth) });
    if (c.at > start + size)
      throw new DotnetProtocolError(c.pid, `${c.what}: field ${name} overruns its ${size} bytes`);
    c.at = start + size;
  }
  return fields;
}
