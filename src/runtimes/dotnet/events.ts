// What tripdump reads out of EventPipe events: payloads decoded by their metadata, the few native runtime
// events it needs (which carry no field metadata, so their documented layouts are used), EventCounters and
// System.Diagnostics.Metrics values. Every read is bounds-checked (Cursor).
import { DotnetProtocolError } from './errors.js';
import { Cursor, type FieldDef, type TraceEvent, TypeCode } from './nettrace.js';

export type FieldValue = string | number | bigint | boolean | FieldValue[] | { [name: string]: FieldValue };

const MAX_ARRAY = 65_535;

function readValue(c: Cursor, f: FieldDef, depth: number): FieldValue {
  switch (f.type) {
    case TypeCode.object:
      return readObject(c, f.fields ?? [], depth + 1);
    case TypeCode.boolean:
      return c.u32() !== 0;
    case TypeCode.char:
      return String.fromCharCode(c.u16());
    case TypeCode.sbyte:
      return (c.u8() << 24) >> 24;
    case TypeCode.byte:
      return c.u8();
    case TypeCode.int16:
      return (c.u16() << 16) >> 16;
    case TypeCode.uint16:
      return c.u16();
    case TypeCode.int32:
      return c.i32();
    case TypeCode.uint32:
      return c.u32();
    case TypeCode.int64:
      return c.i64();
    case TypeCode.uint64:
      return c.u64();
    case TypeCode.single:
      return c.f32();
    case TypeCode.double:
      return c.f64();
    case TypeCode.decimal:
      c.skip(16);
      return Number.NaN;
    case TypeCode.dateTime:
      return c.i64();
    case TypeCode.guid:
      return c.bytes(16).toString('hex');
    case TypeCode.string:
      return c.utf16z();
    case TypeCode.array: {
      const n = c.u16();
      if (n > MAX_ARRAY || !f.elementType)
        throw new DotnetProtocolError(c.pid, `${c.what}: bad array field ${f.name}`);
      const out: FieldValue[] = [];
      for (let i = 0; i < n; i++) out.push(readValue(c, f.elementType, depth + 1));
      return out;
    }
    default:
      throw new DotnetProtocolError(c.pid, `${c.what}: field ${f.name} has unknown type code ${f.type}`);
  }
}

function readObject(c: Cursor, fields: readonly FieldDef[], depth: number): { [name: string]: FieldValue } {
  if (depth > 16) throw new DotnetProtocolError(c.pid, `${c.what}: payload nested too deep`);
  const o: { [name: string]: FieldValue } = {};
  for (const f of fields) o[f.name] = readValue(c, f, depth);
  return o;
}

/** Decodes an event's payload with its metadata's field layout. */
export function decodePayload(e: TraceEvent, pid?: number): { [name: string]: FieldValue } {
  const c = new Cursor(
    e.payload,
    0,
    e.payload.length,
    pid,
    `${e.metadata.provider}/${e.metadata.eventName || e.metadata.eventId} payload`,
  );
  return readObject(c, e.metadata.fields, 0);
}

export const RUNTIME_PROVIDER = 'Microsoft-Windows-DotNETRuntime';
/** Keywords of the runtime provider tripdump uses. */
export const RuntimeKeyword = { gc: 0x1n, exception: 0x8000n } as const;
export const RuntimeEvent = { gcStart: 1, gcEnd: 2, gcHeapStats: 4, exceptionThrown: 80 } as const;

export interface GcStart {
  kind: 'gc-start';
  count: number;
  generation: number;
  reason: number;
  type: number;
}
export interface GcEnd {
  kind: 'gc-end';
  count: number;
  generation: number;
}
/** Generation sizes after a collection, bytes: gen0, gen1, gen2, LOH, POH (POH from GCHeapStats_V2). */
export interface GcHeapStats {
  kind: 'gc-heap';
  sizes: [number, number, number, number, number];
  total: number;
}
export interface ExceptionThrown {
  kind: 'exception';
  type: string;
  message: string;
  hresult: number;
}
export type RuntimeEventData = GcStart | GcEnd | GcHeapStats | ExceptionThrown;

/**
 * The runtime events tripdump reacts to, decoded by their documented layouts (ClrEtwAll.man); undefined for
 * any other event. GCStart_V2: Count, Depth, Reason, Type (u32 each), ...; GCEnd_V1: Count, Depth;
 * GCHeapStats_V2: (size, promoted) u64 pairs for gen0..gen3, 5 more counters, ClrInstanceID u16, then
 * gen4 (POH) size and promoted; ExceptionThrown_V1: type and message as NUL-terminated UTF-16, EIP, HRESULT.
 */
export function runtimeEvent(e: TraceEvent, pid?: number): RuntimeEventData | undefined {
  if (e.metadata.provider !== RUNTIME_PROVIDER) return undefined;
  const c = new Cursor(
    e.payload,
    0,
    e.payload.length,
    pid,
    `${RUNTIME_PROVIDER} event ${e.metadata.eventId}`,
  );
  switch (e.metadata.eventId) {
    case RuntimeEvent.gcStart:
      return { kind: 'gc-start', count: c.u32(), generation: c.u32(), reason: c.u32(), type: c.u32() };
    case RuntimeEvent.gcEnd:
      return { kind: 'gc-end', count: c.u32(), generation: c.u32() };
    case RuntimeEvent.gcHeapStats: {
      const sizes: number[] = [];
      for (let gen = 0; gen < 4; gen++) {
        sizes.push(Number(c.u64()));
        c.u64();
      }
      c.skip(8 + 8 + 4 + 4 + 4 + 2); // finalization promoted size/count, pinned, sink blocks, handles, instance
      sizes.push(c.remaining >= 8 ? Number(c.u64()) : 0);
      const s = sizes as GcHeapStats['sizes'];
      return { kind: 'gc-heap', sizes: s, total: s.reduce((a, b) => a + b, 0) };
    }
    case RuntimeEvent.exceptionThrown: {
      const type = c.utf16z();
      const message = c.utf16z();
      c.skip(e.metadata.version >= 1 ? 8 : 0);
      return { kind: 'exception', type, message, hresult: c.remaining >= 4 ? c.u32() : 0 };
    }
    default:
      return undefined;
  }
}

export const METRICS_PROVIDER = 'System.Diagnostics.Metrics';

export interface CounterValue {
  /** The EventSource or Meter that published it. */
  provider: string;
  /** Counter or instrument name. */
  name: string;
  displayName?: string;
  unit?: string;
  /** Metrics tags, "key=value,..." ('' when none). */
  tags: string;
  /**
   * mean: an EventCounter's mean over the interval; sum: an incrementing EventCounter's increment;
   * gauge: a Metrics gauge; rate: a Metrics counter's increase over the interval; updown: an up-down
   * counter's value; histogram: a Metrics histogram (value = p50).
   */
  kind: 'mean' | 'sum' | 'gauge' | 'rate' | 'updown' | 'histogram';
  value: number;
  /** Histogram percentiles (p50, p95, p99 as the runtime computes them). */
  quantiles?: Record<string, number>;
  time: number;
}

/** A Metrics session message that is not a value (an error, a limit reached). */
export interface MetricsNotice {
  kind: 'notice';
  event: string;
  sessionId: string;
  text: string;
}

function str(v: FieldValue | undefined): string {
  return typeof v === 'string' ? v : v === undefined ? '' : String(v);
}
function num(v: FieldValue | undefined): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string' && v !== '') return Number(v);
  return Number.NaN;
}

/** "0.5=1.2;0.95=3.4;0.99=5" → { p50: 1.2, p95: 3.4, p99: 5 } */
export function parseQuantiles(s: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of s.split(';')) {
    const [q, v] = part.split('=');
    if (q === undefined || v === undefined) continue;
    const p = Math.round(Number(q) * 1000) / 10;
    if (Number.isFinite(p)) out[`p${p}`] = Number(v);
  }
  return out;
}

/**
 * A counter value from an EventCounters event (any EventSource) or a Metrics event of our session
 * (`sessionId`); a Metrics notice for errors; undefined for anything else.
 */
export function counterEvent(
  e: TraceEvent,
  sessionId: string,
  pid?: number,
): CounterValue | MetricsNotice | undefined {
  const m = e.metadata;
  if (m.eventName === 'EventCounters') {
    // The runtime describes the payload as an object holding the Payload object (the nesting varies).
    const p = findObject(decodePayload(e, pid), 'Payload');
    if (!p) return undefined;
    const increment = p.Increment !== undefined;
    const value = num(increment ? p.Increment : p.Mean);
    if (Number.isNaN(value)) return undefined;
    return {
      provider: m.provider,
      name: str(p.Name),
      displayName: str(p.DisplayName),
      unit: str(p.DisplayUnits),
      tags: '',
      kind: increment ? 'sum' : 'mean',
      value,
      time: e.time,
    };
  }
  if (m.provider !== METRICS_PROVIDER) return undefined;
  const kinds: Record<string, CounterValue['kind']> = {
    GaugeValuePublished: 'gauge',
    CounterRateValuePublished: 'rate',
    UpDownCounterRateValuePublished: 'updown',
    HistogramValuePublished: 'histogram',
  };
  const kind = kinds[m.eventName];
  const p = decodePayload(e, pid);
  const session = str(p.sessionId);
  if (!kind) {
    const errorish = /Error|LimitReached/.test(m.eventName);
    if (!errorish) return undefined;
    // MultipleSessionsNotSupportedError names the session that runs, not ours: it is ours to hear too.
    const text = Object.entries(p)
      .filter(([k]) => k !== 'sessionId')
      .map(([k, v]) => `${k}=${str(v)}`)
      .join(' ');
    return { kind: 'notice', event: m.eventName, sessionId: session, text };
  }
  if (session !== sessionId) return undefined;
  const base = {
    provider: str(p.meterName),
    name: str(p.instrumentName),
    unit: str(p.unit),
    tags: str(p.tags),
    kind,
    time: e.time,
  };
  let value: number;
  let quantiles: Record<string, number> | undefined;
  if (kind === 'histogram') {
    quantiles = parseQuantiles(str(p.quantiles));
    value = quantiles.p50 ?? Number.NaN;
  } else value = num(kind === 'gauge' ? p.lastValue : kind === 'updown' ? (p.value ?? p.rate) : p.rate);
  // An interval with no measurement publishes an empty value: unavailable, not 0.
  if (Number.isNaN(value)) return undefined;
  return { ...base, value, ...(quantiles ? { quantiles } : {}) };
}

type FieldObject = { [name: string]: FieldValue };
function findObject(o: FieldObject, name: string, depth = 0): FieldObject | undefined {
  for (const [k, v] of Object.entries(o)) {
    if (!v || typeof v !== 'object' || Array.isArray(v)) continue;
    if (k === name) return v;
    const inner = depth < 4 ? findObject(v, name, depth + 1) : undefined;
    if (inner) return inner;
  }
  return undefined;
}
