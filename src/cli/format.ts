// Human-readable rendering of sampler records for the table output.
import type { FieldName, ProcessRecord } from '../sampler/fields.js';

const UNITS = ['B', 'K', 'M', 'G', 'T'];

/**
 * What a process controls (its comm, argv, executable path) may hold a newline, colour codes or a
 * window-title sequence. Every human-readable output passes such text through here: control characters
 * (C0, DEL, C1) and the bidirectional overrides that reorder a line become visible escapes (`\x1b`,
 * `\u202e`). JSON output goes through toJson instead.
 */
export function escapeControl(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  return text.replace(/[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, '0')}`
      : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * JSON.stringify, with what it leaves raw but a terminal may act on (DEL, C1 controls, bidirectional
 * overrides, line separators) written as \u escapes: the same JSON for a parser, inert on a screen.
 */
export function toJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(
    /[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v}B` : `${v >= 100 ? v.toFixed(0) : v.toFixed(1)}${UNITS[u]}`;
}

/** Column heading of a field in the table. */
const HEADINGS: Partial<Record<FieldName, string>> = {
  cpuPercent: '%CPU',
  rssBytes: 'RSS',
  vmBytes: 'VSZ',
  threads: 'THR',
  startTime: 'START',
  userTicks: 'UTICKS',
  systemTicks: 'STICKS',
  minorFaults: 'MINFLT',
  majorFaults: 'MAJFLT',
};

export function heading(f: FieldName): string {
  return (
    HEADINGS[f] ??
    f
      .replace(/Bytes$/, '')
      .replace(/[A-Z]/g, (c) => `_${c}`)
      .toUpperCase()
  );
}

export function formatValue(f: FieldName, v: ProcessRecord[FieldName]): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'string') return escapeControl(v);
  if (f === 'cpuPercent') return v.toFixed(1);
  if (f === 'startTime') return new Date(v).toISOString().slice(11, 19);
  if (f.endsWith('Bytes')) return formatBytes(v);
  return String(v);
}

/** Renders rows as an aligned table; the last column (comm when present) is left unpadded. */
export function table(fields: readonly FieldName[], rows: readonly ProcessRecord[]): string {
  const cols = [
    ...fields.filter((f) => f !== 'comm'),
    ...(fields.includes('comm') ? (['comm'] as const) : []),
  ];
  const cells = [cols.map(heading), ...rows.map((r) => cols.map((f) => formatValue(f, r[f])))];
  const widths = cols.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  return cells
    .map((c) => c.map((s, i) => (i === cols.length - 1 ? s : s.padStart(widths[i]!))).join('  '))
    .join('\n');
}
