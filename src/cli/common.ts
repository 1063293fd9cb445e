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

export function parseInteger(option: string, value: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined || !/^[+]?\d+$/.test(value.trim()))
    throw new UsageError(`${option} needs a whole number${min > 0 ? ` ≥ ${min}` : ''}, got '${value ?? ''}'`, option);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`${option} must be between ${min} and ${max}, got ${value}`, option);
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
