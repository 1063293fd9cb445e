// What every command shares: one option parser (duplicates refused), value checks that name the option
// and its range, the exit codes, and one AbortSignal fed by SIGINT and SIGTERM.
import { statSync } from 'node:fs';
import { type ParseArgsConfig, parseArgs } from 'node:util';
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

/** Ranges shared by several commands (each one is documented in its command's -h and in the README). */
export const RANGE = {
  /** A polling or recording interval, ms: up to a day (Node's timers overflow past 2^31 - 1 ms). */
  intervalMs: [1, 86_400_000],
  /** A duration in seconds (-s, --for): up to a day. */
  seconds: [0, 86_400],
} as const;

type Options = NonNullable<ParseArgsConfig['options']>;
type Parsed<O extends Options> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; tokens: true; strict: true }>
>;

/**
 * The options of a subcommand, parsed by node's parseArgs plus what it leaves out: an option given twice
 * is refused (only those declared `multiple` may repeat), a negative number after an option that takes a
 * value is taken as that value (so the range check names it), and every parse error is a UsageError.
 */
export function parseOptions<const O extends Options>(
  argv: readonly string[],
  options: O,
): { values: Parsed<O>['values']; positionals: string[] } {
  const valued = new Set<string>();
  for (const [name, o] of Object.entries(options) as [string, Options[string]][]) {
    if (o.type !== 'string') continue;
    valued.add(`--${name}`);
    if (o.short) valued.add(`-${o.short}`);
  }
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (valued.has(a) && next !== undefined && /^-\d/.test(next)) {
      args.push(`${a}=${next}`);
      i++;
    } else args.push(a);
  }
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, tokens: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const seen = new Map<string, string>();
  for (const t of parsed.tokens) {
    if (t.kind !== 'option' || options[t.name]?.multiple) continue;
    const first = seen.get(t.name);
    if (first !== undefined)
      throw new UsageError(
        `${t.rawName} is given twice${first !== t.rawName ? ` (as ${first} and ${t.rawName})` : ''}: give it once`,
        t.rawName,
      );
    seen.set(t.name, t.rawName);
  }
  return { values: parsed.values, positionals: parsed.positionals };
}

function range(min: number, max: number): string {
  return `${min.toLocaleString('en-US')} to ${max.toLocaleString('en-US')}`;
}

/**
 * A number typed with spaces, tabs or newlines around it (`-c ' 50'`, `-pf $'\t100'`) is refused rather than
 * trimmed: Number() would take it, and a value that is not what was meant must not pass silently.
 */
export function refusePadding(option: string, value: string | undefined): void {
  if (value !== undefined && value !== value.trim())
    throw new UsageError(
      `${option} takes its value without spaces or other blanks around it, got '${value}'`,
      option,
    );
}

export function parseInteger(
  option: string,
  value: string | undefined,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  refusePadding(option, value);
  if (value === undefined || !/^[+]?\d+$/.test(value))
    throw new UsageError(
      `${option} needs a whole number from ${range(min, max)}, got '${value ?? ''}'`,
      option,
    );
  const n = Number(value);
  if (n < min || n > max)
    throw new UsageError(`${option} must be from ${range(min, max)}, got ${value}`, option);
  return n;
}

/** A decimal number (no exponent, no sign) within [min, max]. */
export function parseNumber(option: string, value: string | undefined, min: number, max: number): number {
  refusePadding(option, value);
  if (value === undefined || !/^\d+(\.\d+)?$/.test(value))
    throw new UsageError(`${option} needs a number from ${range(min, max)}, got '${value ?? ''}'`, option);
  const n = Number(value);
  if (n < min || n > max)
    throw new UsageError(`${option} must be from ${range(min, max)}, got ${value}`, option);
  return n;
}

/** A pid that must exist before anything starts: a usage error (exit 2) otherwise. */
export function requireProcess(pid: number, what = 'PID'): number {
  try {
    statSync(`/proc/${pid}`);
  } catch {
    throw new UsageError(`process ${pid} does not exist`, what);
  }
  return pid;
}

const interrupt = new AbortController();
let signalsHandled = false;

/** One AbortSignal for the whole command: the first SIGINT/SIGTERM aborts it, a second exits at once. */
export function interruptSignal(): AbortSignal {
  if (!signalsHandled) {
    signalsHandled = true;
    const onSignal = (sig: NodeJS.Signals) => {
      if (interrupt.signal.aborted) process.exit(EXIT.ok);
      interrupt.abort(new Error(`interrupted by ${sig}`));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  return interrupt.signal;
}

/**
 * The reader of stdout went away (`tripdump sample --all | head`): the command stops as on Ctrl-C, with no
 * stack, and whatever it still writes is dropped.
 */
export function stopWhenStdoutCloses(): void {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    if (!interrupt.signal.aborted) interrupt.abort(new Error('stdout was closed'));
  });
}

/** A coredump_filter mask in hex, with or without 0x (ProcDump's -mc takes `33` and `0x33`): 0 to 0x1ff. */
export function parseMask(option: string, value: string | undefined): number {
  refusePadding(option, value);
  if (value === undefined || !/^(0x)?[0-9a-f]{1,3}$/i.test(value))
    throw new UsageError(
      `${option} needs a hex coredump_filter mask from 0 to 0x1ff, such as 33 or 0x33, got '${value ?? ''}'`,
      option,
    );
  const n = Number.parseInt(value.replace(/^0x/i, ''), 16);
  if (n > 0x1ff)
    throw new UsageError(
      `${option} must be at most 0x1ff (the bits core(5) defines), got '${value}'`,
      option,
    );
  return n;
}
