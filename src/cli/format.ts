// Human-readable rendering of sampler records for the table output.
import type { FieldName, ProcessRecord } from '../sampler/fields.js';

const UNITS = ['B', 'K', 'M', 'G', 'T'];

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
  if (typeof v === 'string') return v;
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
