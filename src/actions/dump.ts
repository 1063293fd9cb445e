// The dump action: a core file named as ProcDump 3.x names it, and, when asked for, the sample history that
// led up to it (trigger, value, process identity, the last samples) as JSON in a folder of its own.
import type { CoreDumpResult, DumpMode } from '../dump/core.js';
import {
  type DotnetDumpName,
  dotnetDumpPath,
  dumpPath,
  exceptionLabel,
  historyPath,
  profilerProcessName,
  timestamp,
} from '../dump/naming.js';
import { duringDump, SystemError } from '../errors.js';
import { type DotnetDumpType, runtimeDumpNote, writeRuntimeAwareDump } from '../runtimes/dotnet/dump.js';
import type { DumpFn } from '../triggers/trigger.js';
import type { Action, ActionContext, ActionResult } from './action.js';
import { writeGcoreDump } from './gcore.js';
import { sidecar, writeFileSafely } from './history.js';

export interface DumpActionOptions {
  /** Folder for the dumps. */
  dir: string;
  /** A custom name (ProcDump's DUMP_FILE): the dumps are NAME.<pid>, NAME_1.<pid>… */
  file?: string | undefined;
  mode?: DumpMode | undefined;
  filter?: number | undefined;
  /** Replace an existing file (-o): a regular file only, never a symlink. Without it, an existing name fails. */
  overwrite?: boolean;
  onProgress?: ((done: number, total: number) => void) | undefined;
  /** Write each dump's sample history to this folder as `<dump name>.json` (default: none). */
  historyDir?: string | undefined;
  /** What a .NET target's runtime writes (default full). */
  dotnetType?: DotnetDumpType | undefined;
  /** Who writes the core: tripdump's writer (default) or gdb's gcore (ProcDump's -usegcore). */
  writer?: 'native' | 'gcore';
  /**
   * Name the dumps of .NET triggers as ProcDump 3.x does (the ProcDump command line): no pid, and
   * `<name>_<N>_<exception type|gc_size|gc_gen>_<YYYY-MM-DD_HH_MM_SS>` for -e, -gcm, -gcgen. Off (the
   * agent's rules), every dump is `<name>_<trigger>_<time>.<pid>`, which two processes never share.
   */
  procdumpDotnetNames?: boolean;
}

/** Per target: how many dumps each ProcDump-numbered .NET trigger has named (ProcDump's N). */
interface Ordinals {
  exception: number;
  gcSize: number;
}

export class DumpAction implements Action {
  readonly kind = 'dump';
  #count = 0;
  /**
   * Names this action wrote that a later dump could be given again: ProcDump would then overwrite its own
   * dump or skip the new one, tripdump adds a counter instead. Default names hold the second they were
   * made in, so only those of the current second are kept (a -w run over thousands of processes keeps
   * nothing growing); custom names serve one pid and at most -n dumps.
   */
  #taken = new Set<string>();
  #takenSecond = '';
  /** By target (pid and start time); only targets whose .NET triggers fired have one. */
  #ordinals = new Map<string, Ordinals>();
  readonly usesHistory: boolean;
  constructor(readonly options: DumpActionOptions) {
    this.usesHistory = options.historyDir !== undefined;
  }

  async run(ctx: ActionContext): Promise<ActionResult> {
    const o = this.options;
    const pid = ctx.target.pid;
    // A trigger that traces the target (signals) writes the dump itself. A .NET target's runtime writes its
    // own dump (falling back to the ptrace writer, which it says).
    const write: DumpFn =
      ctx.firing.dump ??
      ((file, options) =>
        o.writer === 'gcore'
          ? writeGcoreDump(pid, file, options)
          : writeRuntimeAwareDump(pid, file, {
              ...options,
              ...(o.dotnetType ? { dotnetType: o.dotnetType } : {}),
            }));
    const second = timestamp(ctx.time);
    if (!o.file && second !== this.#takenSecond) {
      this.#taken.clear();
      this.#takenSecond = second;
    }
    const dotnet = o.procdumpDotnetNames ? this.#dotnetName(ctx) : undefined;
    const name = (n: number) =>
      dotnet
        ? dotnetDumpPath({ dir: o.dir, file: o.file }, dotnet.process, dotnet.what, ctx.time, n)
        : dumpPath({ dir: o.dir, file: o.file }, ctx.target.name, ctx.firing.tag, pid, ctx.time, n);
    let n = 0;
    while (this.#taken.has(name(n))) n++;
    const file = name(n);
    let result: CoreDumpResult;
    try {
      result = await write(file, {
        ...(o.mode ? { mode: o.mode } : {}),
        ...(o.filter !== undefined ? { filter: o.filter } : {}),
        overwrite: o.overwrite === true,
        signal: ctx.signal,
        ...(o.onProgress ? { onProgress: o.onProgress } : {}),
      });
    } catch (e) {
      if (e instanceof SystemError && e.code === 'EEXIST' && !o.overwrite)
        throw new SystemError(
          { errno: e.errno, code: e.code, syscall: e.syscall, path: file, pid },
          `Dump file ${file} already exists and was not overwritten (use -o to overwrite)`,
        );
      throw duringDump(e, pid);
    }
    this.#taken.add(result.path);
    const index = this.#count++;
    ctx.written.set('dump', result.path);
    if (o.historyDir !== undefined) {
      const history = historyPath(o.historyDir, result.path);
      await writeFileSafely(
        history,
        `${JSON.stringify(sidecar(ctx, { dump: result }), null, 2)}\n`,
        o.overwrite === true,
      );
      ctx.written.set('history', history);
    }
    const paused =
      runtimeDumpNote(result) ?? `target paused ${result.pauseMs.toFixed(1)} ms, ${result.mode} mode`;
    const warn = result.warnings.length ? ` (${result.warnings.join('; ')})` : '';
    return { path: result.path, message: `Core dump ${index} generated: ${result.path} (${paused})${warn}` };
  }

  /**
   * ProcDump 3.x's name for a .NET trigger's dump, undefined for other triggers. Its profiler (-e, -gcm,
   * -gcgen) numbers them: N is, per process, the exception dumps before this one (from 0), the threshold
   * reached (from 1: one dump per threshold), 1 for a collection's start and 2 for its end; its writer
   * (-pc/-pcl) names them `<name>_perfcounter_<time>`.
   */
  #dotnetName(ctx: ActionContext): { process: string; what: DotnetDumpName } | undefined {
    const { firing, target } = ctx;
    if (firing.tag === 'perfcounter') return { process: target.name, what: { tag: 'perfcounter' } };
    if (firing.tag !== 'exception' && firing.tag !== 'gc_size' && firing.tag !== 'gc_gen') return undefined;
    const key = `${target.pid}:${target.startTime}`;
    const counts = this.#ordinals.get(key) ?? { exception: 0, gcSize: 0 };
    this.#ordinals.set(key, counts);
    const what: DotnetDumpName =
      firing.tag === 'exception'
        ? { ordinal: counts.exception++, label: exceptionLabel(String(firing.details?.type ?? '')) }
        : firing.tag === 'gc_size'
          ? { ordinal: ++counts.gcSize, label: 'gc_size' }
          : { ordinal: firing.details?.phase === 'end' ? 2 : 1, label: 'gc_gen' };
    return { process: profilerProcessName(target.pid), what };
  }
}
