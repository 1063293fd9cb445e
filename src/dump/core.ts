// writeCoreDump: an ELF core of a live process, written by the addon over ptrace (no gdb).
import { AbortError, fromNative, notDumpable, UsageError } from '../errors.js';
import { binding } from '../native.js';
import { checkPid } from '../sampler/sampler.js';

export type DumpMode = 'stop' | 'snapshot';

export interface CoreDumpOptions {
  /**
   * 'snapshot' (default where supported): the target is paused only while a copy-on-write child is
   * forked, and the child is dumped. 'stop': every thread stays stopped while memory is written.
   * Snapshot falls back to stop (with a warning) when the target forbids fork (seccomp) or fork fails.
   */
  mode?: DumpMode;
  /** coredump_filter mask (bits as in core(5)); default: the target's own /proc/PID/coredump_filter. */
  filter?: number;
  /** Replace an existing file at `path` (default: EEXIST). */
  overwrite?: boolean;
  /** Aborting stops the dump within 100 ms: threads resumed, partial file removed, rejects with AbortError. */
  signal?: AbortSignal;
  /** Bytes of memory written so far, of the total to write. */
  onProgress?: (done: number, total: number) => void;
}

export interface CoreDumpResult {
  path: string;
  /** Apparent size of the core file. */
  bytesWritten: number;
  /** Space it takes on disk: pages never touched or all zero are holes. */
  bytesOnDisk: number;
  threads: number;
  /** PT_LOAD segments with data, and without (filtered, MADV_DONTDUMP, I/O mappings, [vvar]). */
  mappingsWritten: number;
  mappingsSkipped: number;
  /** How long the target's threads were stopped, ms. */
  pauseMs: number;
  /**
   * Where that pause went, in order: `stop` (seizing and interrupting every thread until all have
   * stopped), `registers` (their register sets), `inspect` (auxv, status, the memory map), `clone` (the
   * snapshot's injected clone), `dontfork` (copying MADV_DONTFORK memory out of the target), `resume`
   * (detaching), `write` (stop mode: the memory written while the target waits), `reap` (snapshot mode:
   * the second, short stop that reaps the snapshot child).
   */
  pausePhases: { phase: string; ms: number }[];
  mode: DumpMode;
  warnings: string[];
}

/** Writes a core file of process `pid` to `path` (mode 0600, written under a temporary name, then renamed). */
export async function writeCoreDump(
  pid: number,
  path: string,
  options: CoreDumpOptions = {},
): Promise<CoreDumpResult> {
  checkPid(pid);
  if (typeof path !== 'string' || path === '') throw new UsageError('a core file path is required', 'path');
  if (path.endsWith('/'))
    throw new UsageError(`'${path}' ends in '/': that names a folder, not a core file`, 'path');
  if (options.mode !== undefined && options.mode !== 'stop' && options.mode !== 'snapshot')
    throw new UsageError(`mode must be 'stop' or 'snapshot', got '${String(options.mode)}'`, 'mode');
  if (
    options.filter !== undefined &&
    (!Number.isInteger(options.filter) || options.filter < 0 || options.filter > 0x1ff)
  )
    throw new UsageError(`filter must be a coredump_filter mask 0..0x1ff, got ${options.filter}`, 'filter');
  const { signal } = options;
  if (signal?.aborted) throw new AbortError('the dump was aborted before it started');
  // A kernel thread or a zombie fails at PTRACE_SEIZE with an errno that says neither: said here instead.
  const why = notDumpable(pid);
  if (why) throw why;
  const handle = binding().writeCoreDump(
    pid,
    path,
    {
      mode: options.mode ?? 'auto',
      overwrite: options.overwrite === true,
      ...(options.filter !== undefined ? { filter: options.filter } : {}),
    },
    options.onProgress,
  );
  const onAbort = () => handle.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await handle.promise;
  } catch (e) {
    if (signal?.aborted && (e as { code?: string }).code === 'ECANCELED')
      throw new AbortError(`the dump of process ${pid} was aborted; no file was left`);
    throw fromNative(e);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
