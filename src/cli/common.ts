// What every command shares: value checks that name the option, the exit codes, and one AbortSignal
// fed by SIGINT and SIGTERM.
import { UsageError } from '../errors.js';

export { sleep } from '../abort.js';

/** Exit codes (documented in the README). */
export const EXIT = {
  ok: 0,
  /** A system call failed during the run (permission, disk, the target misbehaving). */
  failure: 1,
  /** Bad command line: an unknown option, a bad value, a pid that does not exist. Nothing was done. */
  usage: 2,
} as const;

export function parseInteger(
  option: string,
  value: string | undefined,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined || !/^[+]?\d+$/.test(value.trim()))
    throw new UsageError(
      `${option} needs a whole number${min > 0 ? ` ≥ ${min}` : ''}, got '${value ?? ''}'`,
      option,
    );
  const n = Number(value);
  if (n < min || n > max)
    throw new UsageError(`${option} must be between ${min} and ${max}, got ${value}`, option);
  return n;
}

/** One AbortSignal for the whole command: the first SIGINT/SIGTERM aborts it, a second exits at once. */
export function interruptSignal(): AbortSignal {
  const ctl = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (ctl.signal.aborted) process.exit(EXIT.ok);
    ctl.abort(new Error(`interrupted by ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return ctl.signal;
}

/** A coredump_filter mask in hex, with or without 0x (ProcDump's -mc takes `33` and `0x33`). */
export function parseMask(option: string, value: string | undefined): number {
  if (value === undefined || !/^(0x)?[0-9a-f]{1,3}$/i.test(value.trim()))
    throw new UsageError(
      `${option} needs a hex coredump_filter mask such as 33 or 0x33, got '${value ?? ''}'`,
      option,
    );
  const n = Number.parseInt(value.trim().replace(/^0x/i, ''), 16);
  if (n > 0x1ff)
    throw new UsageError(
      `${option} must be at most 0x1ff (the bits core(5) defines), got '${value}'`,
      option,
    );
  return n;
}
