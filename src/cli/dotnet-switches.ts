// ProcDump 3.x's .NET switches for the monitor command line, as rows of procdump.ts's switch table: -gcm,
// -gcgen, -e, -f, -pc and -pcl (which take two values: PROVIDER:COUNTER VALUE).
import { UsageError } from '../errors.js';
import { sosFilter } from '../runtimes/dotnet/dump.js';
import { DotnetUnavailableError } from '../runtimes/dotnet/errors.js';
import { locateSocket } from '../runtimes/dotnet/socket.js';
import {
  CounterTrigger,
  ExceptionTrigger,
  GcGenerationTrigger,
  GcMemoryTrigger,
  isDotnetTrigger,
  parseCounterSpec,
  parseGcm,
} from '../runtimes/dotnet/triggers.js';
import type { Building, Switch } from './procdump.js';

export const DOTNET_USAGE = `.NET triggers (over the runtime's diagnostics socket; nothing is injected into the target):
  -gcm [GEN:]MB[,MB..]  managed heap at or above each threshold in turn, after a collection; GEN is
                gen0, gen1, gen2, LOH or POH (default: the total)
  -gcgen N      a dump when a collection of generation N starts and one when it ends (-n 2, -s 0)
  -e            a first-chance exception
  -f F[,F..]    with -e: only exceptions whose "Type" or "Type: message" matches (* wildcards)
  -pc PROVIDER:COUNTER[pNN] VALUE   an EventCounter or Metrics instrument at or above VALUE (its own
                unit; [p95] for a histogram percentile); tripdump counters PID lists them
  -pcl PROVIDER:COUNTER[pNN] VALUE  the same, below VALUE
  Their dumps get ProcDump's names, without a pid: <name>_<N>_<exception type>_<YYYY-MM-DD_HH_MM_SS>
  (-e, N from 0), <name>_<N>_gc_size_<...> (-gcm, N the threshold from 1), <name>_<1|2>_gc_gen_<...>
  (-gcgen: start, end), <name>_perfcounter_<yymmdd_HHMMSS> (-pc, -pcl); DUMP_FILE_<N> with a DUMP_FILE
`;

function counter(direction: 'above' | 'below'): Switch {
  return {
    values: 2,
    apply(b, [spec, value], s) {
      const parsed = parseCounterSpec(spec!, s);
      if (!/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(value!))
        throw new UsageError(`${s} needs a number after the counter, got '${value}'`, s);
      b.triggers.push(new CounterTrigger(parsed, direction, Number(value)));
    },
  };
}

export const DOTNET_SWITCHES: Record<string, Switch> = {
  gcm: {
    values: 1,
    apply(b, [v]) {
      const { heap, thresholdsMB } = parseGcm(v!);
      b.triggers.push(new GcMemoryTrigger(heap, thresholdsMB));
      // One dump per threshold, as -m.
      b.defaultCount = Math.max(b.defaultCount ?? 1, thresholdsMB.length);
    },
  },
  gcgen: {
    values: 1,
    apply(b, [v], s) {
      if (!/^\d+$/.test(v!)) throw new UsageError(`${s} needs a generation 0, 1 or 2, got '${v}'`, s);
      b.triggers.push(new GcGenerationTrigger(Number(v)));
      // The start of the collection and its end: two dumps, with no quiet time between them.
      b.defaultCount = Math.max(b.defaultCount ?? 1, 2);
      b.defaultCooldownMs = 0;
    },
  },
  e: {
    values: 0,
    apply(b) {
      b.exceptions = true;
    },
  },
  f: {
    values: 1,
    apply(b, [v]) {
      b.exceptionFilters = v!.split(',').map((x) => x.trim());
    },
  },
  pc: counter('above'),
  pcl: counter('below'),
};

/** After every switch: -e with its -f filters becomes one trigger. */
export function finishDotnetSwitches(b: Building, spelled: (name: string) => string | undefined): void {
  if (b.exceptionFilters && !b.exceptions)
    throw new UsageError('-f filters exceptions: use it with -e', spelled('f'));
  if (b.exceptions) b.triggers.push(new ExceptionTrigger(b.exceptionFilters ?? []));
}

/**
 * A .NET trigger on a process that cannot have one, or --type for a process that is not .NET, is a mistake
 * on the command line: say so at once.
 */
export function checkDotnetTarget(pid: number, b: Pick<Building, 'triggers' | 'dotnetType'>): void {
  const triggers = b.triggers.some(isDotnetTrigger);
  if (!triggers && !b.dotnetType) return;
  try {
    locateSocket(pid);
  } catch (e) {
    if (!(e instanceof DotnetUnavailableError)) throw e;
    // A planted socket is not a command-line mistake: its own error, exit 1.
    if (e.reason === 'untrusted') throw e;
    if (triggers)
      throw new UsageError(`.NET triggers need a .NET process with diagnostics: ${e.message}`, 'PID');
    if (e.reason === 'not-dotnet')
      throw new UsageError(`--type chooses what a .NET runtime writes: ${e.message}`, '--type');
  }
}

/** Who writes a process's dumps: its .NET runtime, the core writer for a .NET process, or for any other. */
export type DumpWriterKind =
  | { kind: 'runtime' }
  | { kind: 'dotnet-core'; why: string; filter: number }
  | { kind: 'core' };

export function dumpWriterOf(pid: number, filter: number | undefined): DumpWriterKind {
  try {
    locateSocket(pid);
    return { kind: 'runtime' };
  } catch (e) {
    if (!(e instanceof DotnetUnavailableError) || e.reason === 'not-dotnet') return { kind: 'core' };
    const why = e.reason === 'disabled' ? '.NET diagnostics disabled' : 'no .NET diagnostics socket';
    return { kind: 'dotnet-core', why, filter: filter ?? sosFilter(pid) };
  }
}

/**
 * The settings block's "Dump Mode": what will really write the dumps. `writer` undefined: several
 * processes (-w, -pgid), .NET ones or not.
 */
export function dumpModeSetting(
  c: {
    gcore: boolean;
    mode: string | undefined;
    dotnetType: string | undefined;
    filter?: number | undefined;
  },
  writer: DumpWriterKind | undefined,
): string {
  if (c.gcore) return 'gcore (stop)';
  const mode = c.mode ?? 'snapshot';
  const runtime = `.NET runtime dump of type ${c.dotnetType ?? 'full'} over the diagnostics socket, the process suspended while it is written${c.filter !== undefined ? ' (-mc does not apply to it)' : ''}`;
  if (!writer) return `${mode}; a .NET process: ${runtime}`;
  if (writer.kind === 'runtime') return runtime;
  if (writer.kind === 'dotnet-core')
    return `${mode}, core writer (${writer.why}), coredump_filter 0x${writer.filter.toString(16)}`;
  return mode;
}

export { isDotnetTrigger };
