// `tripdump sample [PID…|--all] [--fields LIST|all] [--interval MS] [--count N] [--json]`: what the
// sampler sees, as a table or as JSON lines.
import { ProcessGoneError, UsageError } from '../errors.js';
import { FIELD_NAMES, type FieldName } from '../sampler/fields.js';
import { checkPid, parseFields, Sampler } from '../sampler/sampler.js';
import type { Snapshot } from '../sampler/snapshot.js';
import { EXIT, interruptSignal, parseInteger, parseOptions, RANGE, sleep } from './common.js';
import { table, toJson } from './format.js';
import { prefixRuntimeColumn, RuntimeColumn, runtimeLabel } from './runtime-column.js';

/** --count: up to a billion samples (0: until Ctrl-C). */
const MAX_COUNT = 1_000_000_000;

export const SAMPLE_USAGE = `Usage: tripdump sample [PID...|--all] [options]

Prints what the sampler sees: a table, or one JSON object per process per sample with --json.

  --all                 every process on the host (new ones are picked up each sample)
  --fields LIST|all     comma-separated fields (default: the /proc/PID/stat fields); 'all' adds
                        memory detail, I/O, fd and socket counts. Known fields:
                        ${FIELD_NAMES.join(', ')}
  --interval MS         time between samples, 1 to 86,400,000 (default 1000); the first printed sample
                        comes one interval after the start, so cpuPercent covers a real interval
  --count N             samples to print, 0 to 1,000,000,000 (default 1; 0 = until Ctrl-C)
  --children            also sample children of the given pids
  --threads             also sample each thread, as rows of their own
  --host                also print host CPU, memory and load
  --runtime             also say which runtime each process runs (.NET and its version)
  --json                JSON lines instead of a table
`;

/** The table's default columns: the useful stat fields, when the caller did not choose. */
const TABLE_DEFAULT: FieldName[] = [
  'pid',
  'ppid',
  'state',
  'threads',
  'cpuPercent',
  'rssBytes',
  'vmBytes',
  'comm',
];

export async function sampleCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const { values, positionals } = parseOptions(argv, {
    all: { type: 'boolean' },
    fields: { type: 'string' },
    interval: { type: 'string' },
    count: { type: 'string' },
    children: { type: 'boolean' },
    threads: { type: 'boolean' },
    host: { type: 'boolean' },
    runtime: { type: 'boolean' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    out.write(SAMPLE_USAGE);
    return EXIT.ok;
  }
  const pids = positionals.map((p) => {
    if (!/^\d+$/.test(p)) throw new UsageError(`'${p}' is not a pid (a positive whole number)`, 'PID');
    return checkPid(Number(p));
  });
  if (values.all && pids.length) throw new UsageError('give either PIDs or --all, not both', '--all');
  if (!values.all && !pids.length)
    throw new UsageError('nothing to sample: give one or more PIDs, or --all', 'PID');
  const fields = parseFields(
    values.fields === undefined || values.fields === 'all'
      ? values.fields
      : values.fields.split(',').map((f) => f.trim()),
  );
  const interval =
    values.interval === undefined ? 1000 : parseInteger('--interval', values.interval, ...RANGE.intervalMs);
  const count = values.count === undefined ? 1 : parseInteger('--count', values.count, 0, MAX_COUNT);
  const shown = values.json || values.fields !== undefined ? fields : TABLE_DEFAULT;

  const sampler = new Sampler({
    fields,
    all: values.all === true,
    children: values.children === true,
    threads: values.threads === true,
    host: values.host === true,
  });
  try {
    // Every pid is checked before anything is printed: a missing one is a usage error, nothing half-done.
    for (const pid of pids) {
      try {
        sampler.watch(pid);
      } catch (e) {
        if (e instanceof ProcessGoneError) throw new UsageError(`process ${pid} does not exist`, 'PID');
        throw e;
      }
    }
    const signal = interruptSignal();
    const runtimes = values.runtime ? new RuntimeColumn() : undefined;
    await sampler.sampleAsync(); // the baseline cpuPercent is measured against
    for (let n = 0; count === 0 || n < count; n++) {
      await sleep(interval, signal);
      if (signal.aborted) break;
      const snap = await sampler.sampleAsync();
      await print(snap, shown, values.json === true, out, runtimes);
      if (!values.all && snap.length === 0) {
        process.stderr.write('tripdump: every watched process has exited\n');
        break;
      }
    }
  } finally {
    sampler.close();
  }
  return EXIT.ok;
}

async function print(
  snap: Snapshot,
  fields: readonly FieldName[],
  json: boolean,
  out: NodeJS.WritableStream,
  runtimes: RuntimeColumn | undefined,
): Promise<void> {
  const facts = runtimes ? await runtimes.facts([...snap.records()]) : undefined;
  if (json) {
    const lines: string[] = [];
    for (const r of snap.records()) {
      const o: Record<string, unknown> = { time: snap.time };
      for (const f of fields) o[f] = r[f];
      if (facts) {
        const rt = facts.get(r.pid);
        o.runtime = rt?.kind ?? null;
        o.runtimeVersion = rt && 'version' in rt ? (rt.version ?? null) : null;
      }
      lines.push(toJson(o));
    }
    for (const e of snap.exited) lines.push(toJson({ time: snap.time, event: 'exit', ...e }));
    if (snap.host) lines.push(toJson({ time: snap.time, host: snap.host }));
    if (lines.length) out.write(`${lines.join('\n')}\n`);
    return;
  }
  const rows = [...snap.records()];
  let text = table(fields, rows);
  if (facts)
    text = prefixRuntimeColumn(
      text,
      rows.map((r) => runtimeLabel(facts.get(r.pid))),
    );
  if (snap.host) {
    const h = snap.host;
    const gib = (b: number | null) => (b === null ? '-' : `${(b / 2 ** 30).toFixed(1)}G`);
    text =
      `host: cpu ${h.cpuPercent?.toFixed(1) ?? '-'}% of ${h.cpus}  mem ${gib(h.memAvailableBytes)} available of ${gib(h.memTotalBytes)}` +
      `  load ${h.load1} ${h.load5} ${h.load15}\n${text}`;
  }
  for (const e of snap.exited) text += `\n(pid ${e.pid} exited)`;
  out.write(`${new Date(snap.time).toISOString()}\n${text}\n\n`);
}
