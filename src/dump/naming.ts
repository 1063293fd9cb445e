// ProcDump's dump file names, `<name>_<trigger>_<yymmdd_HHMMSS>.<pid>`, made collision-free.
import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The name ProcDump uses for a process: the basename of argv[0], every non-alphanumeric character turned
 * into `_`. Falls back to comm for processes without a command line (kernel threads, zombies).
 */
export function processName(pid: number): string {
  let argv0 = '';
  try {
    argv0 = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0')[0] ?? '';
  } catch {
    // gone or unreadable: comm below, or 'unknown'
  }
  if (!argv0) {
    try {
      argv0 = readFileSync(`/proc/${pid}/comm`, 'latin1').trim();
    } catch {
      argv0 = 'unknown';
    }
  }
  return sanitize(path.basename(argv0)) || 'unknown';
}

export function sanitize(name: string): string {
  return name.replace(/[^A-Za-z0-9]/g, '_');
}

/** yymmdd_HHMMSS in local time, as ProcDump writes it. */
export function timestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getFullYear() % 100)}${p(d.getMonth() + 1)}${p(d.getDate())}_${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/**
 * The n-th candidate path for a dump (n = 0 first). ProcDump overwrites or stops when two dumps fall in
 * the same second, or on a custom name; we try `_1`, `_2`… before the pid suffix (or after a custom name)
 * until the writer's O_EXCL open succeeds.
 */
export function dumpPath(
  target: { dir: string; file?: string | undefined },
  name: string,
  tag: string,
  pid: number,
  when: Date,
  n: number,
): string {
  if (target.file) return path.join(target.dir, n === 0 ? target.file : `${target.file}_${n}`);
  const suffix = n === 0 ? '' : `_${n}`;
  return path.join(target.dir, `${name}_${tag}_${timestamp(when)}${suffix}.${pid}`);
}
