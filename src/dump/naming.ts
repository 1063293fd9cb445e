// ProcDump's dump file names: `<name>_<trigger>_<yymmdd_HHMMSS>.<pid>`, or `<custom>.<pid>`, with a
// counter (`_1`, `_2`…) where one run would otherwise reuse a name, and cut to what a file system takes.
// Its .NET triggers name theirs differently (dotnetDumpPath): no pid, and for -e/-gcm/-gcgen the names its
// profiler makes, `<name>_<N>_<what>_<YYYY-MM-DD_HH_MM_SS>`.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Longest file name, in bytes, on Linux file systems (NAME_MAX). Names derived from a process are cut to
 * fit; the trigger, the time, the counter and the pid are always kept whole.
 */
export const NAME_MAX = 255;

/**
 * argv[0]'s basename, raw (it may hold anything but '/'), falling back to comm, then 'unknown'. Read byte
 * by byte (latin1) where each byte counts, as in ProcDump's sanitized names; as UTF-8 for a name kept whole.
 */
function argv0Basename(pid: number, encoding: 'latin1' | 'utf8' = 'latin1'): string {
  let argv0 = '';
  try {
    argv0 = readFileSync(`/proc/${pid}/cmdline`, encoding).split('\0')[0] ?? '';
  } catch {
    // gone or unreadable: comm below, or 'unknown'
  }
  if (!argv0) {
    try {
      argv0 = readFileSync(`/proc/${pid}/comm`, encoding).replace(/\n$/, '');
    } catch {
      return 'unknown';
    }
  }
  return path.basename(argv0);
}

/**
 * The name ProcDump uses for a process: the basename of argv[0], every non-alphanumeric character turned
 * into `_`. Falls back to comm for processes without a command line (kernel threads, zombies).
 */
export function processName(pid: number): string {
  return sanitize(argv0Basename(pid)) || 'unknown';
}

export function sanitize(name: string): string {
  return name.replace(/[^A-Za-z0-9]/g, '_');
}

/** yymmdd_HHMMSS in local time, as ProcDump writes it. */
export function timestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getFullYear() % 100)}${p(d.getMonth() + 1)}${p(d.getDate())}_${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** `s` cut (whole UTF-8 characters) to at most `bytes` bytes. */
function cutTo(s: string, bytes: number): string {
  if (Buffer.byteLength(s) <= bytes) return s;
  let cut = '';
  for (const ch of s) {
    if (Buffer.byteLength(cut + ch) > bytes) break;
    cut += ch;
  }
  return cut;
}

/** Cuts `head` so that head + tail fits NAME_MAX bytes; tail is kept whole. */
function fitName(head: string, tail: string): string {
  return cutTo(head, NAME_MAX - Buffer.byteLength(tail)) + tail;
}

/**
 * The n-th name (n = 0 first) for a dump of `pid`, as ProcDump 3.x names it: `<name>_<tag>_<time>.<pid>`,
 * or `<file>.<pid>` for a custom name. n > 0 adds `_<n>` before the pid: the names a run uses where
 * ProcDump would reuse one (two dumps in one second, several dumps to a custom name). A process name too
 * long for the file system is cut; the tag, time, counter and pid are kept. `pid` undefined: no `.<pid>`
 * (what ProcDump's writer leaves on a .NET runtime's dump).
 */
export function dumpPath(
  target: { dir: string; file?: string | undefined },
  name: string,
  tag: string,
  pid: number | undefined,
  when: Date,
  n: number,
): string {
  const tail = `${n === 0 ? '' : `_${n}`}${pid === undefined ? '' : `.${pid}`}`;
  if (target.file) return path.join(target.dir, fitName(target.file, tail));
  return path.join(target.dir, fitName(name, `_${tag}_${timestamp(when)}${tail}`));
}

/** YYYY-MM-DD_HH_MM_SS in local time: the time in the names ProcDump's .NET profiler gives its dumps. */
export function profilerTimestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}_${p(d.getHours())}_${p(d.getMinutes())}_${p(d.getSeconds())}`;
}

/**
 * A process as ProcDump's .NET profiler names it: argv[0]'s basename as it is (not `_`-sanitized), but
 * control and bidirectional-format characters, which would disguise the file in a listing, as `_`.
 */
export function profilerProcessName(pid: number): string {
  return argv0Basename(pid, 'utf8').replace(/[\p{Cc}\p{Cf}]/gu, '_') || 'unknown';
}

/**
 * An exception type as ProcDump's profiler puts it in a dump name: the type's own name from its metadata,
 * which for a generic type has no argument list (`Failure\`1`, where the runtime's event says
 * `Failure\`1[System.Int32]`) and for a nested type no outer type (`Inner` for `Outer+Inner`).
 * Characters a file name or a glob would take for something else become `_`.
 */
export function exceptionLabel(type: string): string {
  const own = type.replace(/\[.*$/s, '');
  const name = own.slice(own.lastIndexOf('+') + 1);
  return name.replace(/[^\p{L}\p{N}._`-]/gu, '_') || 'Exception';
}

/** What names a .NET trigger's dump, as ProcDump 3.x does for that trigger. */
export type DotnetDumpName =
  /** -e, -gcm, -gcgen (its profiler): `<name>_<N>_<label>_<YYYY-MM-DD_HH_MM_SS>`, or `<file>_<N>`. */
  | { ordinal: number; label: string }
  /** -pc/-pcl (its dump writer, on a .NET process): `<name>_perfcounter_<yymmdd_HHMMSS>`, or `<file>`. */
  | { tag: string };

/**
 * The n-th name (n = 0 first) for a dump of a .NET trigger, as ProcDump 3.x names it: never a pid (its
 * profiler adds none, and its writer adds none to a .NET runtime's dump). n > 0 adds `_<n>` at the end,
 * where ProcDump would reuse a name. Cut to NAME_MAX: the process name first, then the label; the ordinal,
 * time and counter are kept whole. `name` is profilerProcessName() for the profiler's names, processName()
 * for the writer's.
 */
export function dotnetDumpPath(
  target: { dir: string; file?: string | undefined },
  name: string,
  what: DotnetDumpName,
  when: Date,
  n: number,
): string {
  if ('tag' in what) return dumpPath(target, name, what.tag, undefined, when, n);
  const counter = n === 0 ? '' : `_${n}`;
  if (target.file) return path.join(target.dir, fitName(target.file, `_${what.ordinal}${counter}`));
  const tail = `_${profilerTimestamp(when)}${counter}`;
  const middle = `_${what.ordinal}_`;
  // The process name gives way first (down to 16 bytes), then the label.
  const room = NAME_MAX - Buffer.byteLength(middle + tail);
  const label = cutTo(what.label, room - Math.min(16, Buffer.byteLength(name)));
  return path.join(target.dir, fitName(name, `${middle}${label}${tail}`));
}

/**
 * The sample history of a dump: `<dump name>.json` in `dir`. A dump name near NAME_MAX loses characters
 * from its start (the process name) so that the trigger, time and pid stay.
 */
export function historyPath(dir: string, dumpFile: string): string {
  let base = path.basename(dumpFile);
  while (Buffer.byteLength(`${base}.json`) > NAME_MAX) base = [...base].slice(1).join('');
  return path.join(dir, `${base}.json`);
}

/** The flight recorder's file: `flight_<exe>_<yymmdd_HHMMSS>[_n].<pid>.json`, cut like dump names. */
export function flightRecorderPath(dir: string, exe: string, pid: number, when: Date, n: number): string {
  const counter = n === 0 ? '' : `_${n}`;
  return path.join(
    dir,
    fitName(`flight_${sanitize(exe) || 'unknown'}`, `_${timestamp(when)}${counter}.${pid}.json`),
  );
}

/**
 * Whether process `pid` (whose comm is `comm`) goes by `name`, as ProcDump matches names: its comm, or
 * argv[0]'s basename (comm is cut at 15 bytes). `name` may be given raw or in its `_` form.
 */
export function matchesName(pid: number, comm: string, name: string): boolean {
  if (comm === name) return true;
  if (!name.startsWith(comm)) return false;
  const base = argv0Basename(pid);
  return base === name || sanitize(base) === sanitize(name);
}

/** Every process that goes by `name`, in pid order (ProcDump's bare process name). */
export function pidsNamed(name: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let comm: string;
    try {
      comm = readFileSync(`/proc/${pid}/comm`, 'latin1').replace(/\n$/, '');
    } catch {
      continue; // exited meanwhile
    }
    if (matchesName(pid, comm, name)) found.push(pid);
  }
  return found.sort((a, b) => a - b);
}
