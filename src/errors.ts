// Typed errors (docs/design.md §8). Native code reports {errno, syscall, path?, pid?}; this module turns that into
// classes with Node's field names: `code` ('ESRCH'), `errno` (negative, as Node's own SystemError),
// `syscall`, `path`, plus `pid`.
import { readFileSync, statSync } from 'node:fs';
import { constants } from 'node:os';

/** What the native addon attaches to the errors it throws. */
export interface NativeErrorInfo {
  errno: number;
  code: string;
  syscall: string;
  path?: string;
  pid?: number;
  detail?: string;
}

export class TripdumpError extends Error {
  override name = 'TripdumpError';
}

/** A failed system call, with errno/syscall/path/pid kept. */
export class SystemError extends TripdumpError {
  override name = 'SystemError';
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  readonly path: string | undefined;
  readonly pid: number | undefined;
  constructor(info: NativeErrorInfo, message?: string) {
    super(message ?? describe(info));
    this.code = info.code;
    this.errno = info.errno;
    this.syscall = info.syscall;
    this.path = info.path;
    this.pid = info.pid;
  }
}

/** The process does not exist (ESRCH, or /proc/PID is gone). */
export class ProcessGoneError extends SystemError {
  override name = 'ProcessGoneError';
  constructor(info: NativeErrorInfo, what = 'does not exist') {
    super(info, `process ${info.pid ?? '?'} ${what} (${info.syscall}: ${info.code})`);
  }
}

/** Whether an error names a file of the caller's (an output path), rather than something of a process. */
function isFileError(info: NativeErrorInfo): info is NativeErrorInfo & { path: string } {
  return info.path !== undefined && info.path !== '' && !info.path.startsWith('/proc/');
}

/** Permission denied (EPERM/EACCES), with a hint naming the likely cause. */
export class AccessDeniedError extends SystemError {
  override name = 'AccessDeniedError';
  readonly hint: string;
  constructor(info: NativeErrorInfo) {
    // A folder or file that cannot be written is named as such: the process has nothing to do with it.
    const hint = isFileError(info) ? '' : accessHint(info.pid);
    super(
      info,
      isFileError(info)
        ? `permission denied for ${info.path} (${info.syscall}: ${info.code})`
        : `permission denied for ${info.pid ? `process ${info.pid}` : 'the operation'} (${info.syscall}: ${info.code})${hint ? `: ${hint}` : ''}`,
    );
    this.hint = hint;
  }
}

/** The target is already traced by another process (a debugger). */
export class AlreadyTracedError extends SystemError {
  override name = 'AlreadyTracedError';
  readonly tracerPid: number;
  constructor(info: NativeErrorInfo, tracerPid: number) {
    super(
      info,
      `process ${info.pid ?? '?'} is already traced by pid ${tracerPid} (detach the debugger first)`,
    );
    this.tracerPid = tracerPid;
  }
}

/** Bad input from a caller: an option or value that cannot be used. Never carries an errno. */
export class UsageError extends TripdumpError {
  override name = 'UsageError';
  readonly option: string | undefined;
  constructor(message: string, option?: string) {
    super(message);
    this.option = option;
  }
}

/** An operation stopped by an AbortSignal. */
export class AbortError extends TripdumpError {
  override name = 'AbortError';
  readonly code = 'ABORT_ERR';
  constructor(message = 'the operation was aborted') {
    super(message);
  }
}

/** What an errno means for an output path, in words. */
const FILE_ERRORS: Record<string, string> = {
  EEXIST: 'already exists',
  ELOOP: 'is a symbolic link',
  EISDIR: 'is a folder',
  ENOTDIR: 'has a part that is not a folder',
  ENOENT: 'does not exist',
  ENAMETOOLONG: 'is too long a name for the file system',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'is on a read-only file system',
  EINVAL: 'is not a valid file name',
};

function describe(info: NativeErrorInfo): string {
  const detail = info.detail ? `: ${info.detail}` : '';
  const words = FILE_ERRORS[info.code];
  if (isFileError(info) && words) return `${info.path} ${words} (${info.syscall}: ${info.code})${detail}`;
  const where = [info.path, info.pid ? `pid ${info.pid}` : undefined].filter(Boolean).join(', ');
  return `${info.syscall} failed: ${info.code}${where ? ` (${where})` : ''}${detail}`;
}

function readStatusField(pid: number, key: string): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'latin1');
    const m = text.match(new RegExp(`^${key}:\\s*(.*)$`, 'm'));
    return m?.[1]?.trim();
  } catch {
    return undefined;
  }
}

/** The tracer of a process (0 when none), or undefined when it cannot be read. */
export function tracerPidOf(pid: number): number | undefined {
  const v = readStatusField(pid, 'TracerPid');
  return v === undefined ? undefined : Number(v);
}

function accessHint(pid: number | undefined): string {
  const causes: string[] = [];
  if (pid) {
    const uid = readStatusField(pid, 'Uid')?.split(/\s+/)[0];
    const me = process.getuid?.();
    if (uid !== undefined && me !== undefined && Number(uid) !== me && me !== 0)
      causes.push(
        `it runs as uid ${uid} and you are uid ${me} (run as that user, or as root / with CAP_SYS_PTRACE)`,
      );
    const tracer = tracerPidOf(pid);
    if (tracer) causes.push(`it is traced by pid ${tracer}`);
    // A non-dumpable process (PR_SET_DUMPABLE 0, or after a setuid exec) has the files under /proc/PID
    // owned by root whatever its uid (the folder itself keeps its owner): ptrace and /proc/PID/mem then need
    // CAP_SYS_PTRACE, even for its own user.
    try {
      if (uid !== undefined && me !== 0 && statSync(`/proc/${pid}/stat`).uid !== Number(uid))
        causes.push(
          `process ${pid} is not dumpable (it called prctl(PR_SET_DUMPABLE, 0), or exec()ed a setuid or setgid program): only root or a process with CAP_SYS_PTRACE can dump it`,
        );
    } catch {
      // gone: the caller's error says so
    }
  }
  try {
    const scope = readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'latin1').trim();
    if (scope !== '0') causes.push(`kernel.yama.ptrace_scope is ${scope}`);
  } catch {
    // No Yama: nothing to say about it.
  }
  return causes.join('; ');
}

/** Maps an error thrown by the addon to the typed class it stands for; anything else is returned as is. */
export function fromNative(e: unknown): unknown {
  if (!(e instanceof Error) || typeof (e as Partial<NativeErrorInfo>).syscall !== 'string') return e;
  const info = e as Error & NativeErrorInfo;
  const errno = Math.abs(info.errno);
  let out: Error;
  if (errno === constants.errno.ESRCH) out = new ProcessGoneError(info);
  else if (errno === constants.errno.ENOENT && info.pid && info.path?.startsWith('/proc/'))
    out = new ProcessGoneError(info);
  else if (errno === constants.errno.EPERM || errno === constants.errno.EACCES) {
    const tracer = info.pid ? tracerPidOf(info.pid) : undefined;
    out =
      tracer && info.syscall === 'ptrace' && tracer !== process.pid
        ? new AlreadyTracedError(info, tracer)
        : new AccessDeniedError(info);
  } else out = new SystemError(info);
  return out;
}

/** PF_KTHREAD in the flags of /proc/PID/stat (include/linux/sched.h). */
const PF_KTHREAD = 0x00200000;

/** A kernel thread: it has no user memory, so there is no core to write (ptrace would say EPERM). */
export class KernelThreadError extends SystemError {
  override name = 'KernelThreadError';
  constructor(pid: number, comm: string) {
    super(
      { errno: -constants.errno.EPERM, code: 'EPERM', syscall: 'ptrace', pid },
      `process ${pid} (${comm}) is a kernel thread: it has no user memory to dump`,
    );
  }
}

/**
 * A zombie: the process has exited and its parent has not reaped it yet. Nothing of it is left to dump (its
 * memory and threads are gone); it is a ProcessGoneError, as the exit it is.
 */
export class ZombieProcessError extends ProcessGoneError {
  override name = 'ZombieProcessError';
  constructor(pid: number, comm: string, ppid: number) {
    super({ errno: -constants.errno.ESRCH, code: 'ESRCH', syscall: 'ptrace', pid });
    // No system call failed: the message says what the process is, not an errno.
    this.message = `process ${pid} (${comm}) has exited and is not yet reaped by its parent (pid ${ppid}): a zombie has nothing left to dump`;
  }
}

/**
 * Why process pid can never be dumped, read from /proc/PID/stat before a dump starts: it is a kernel thread,
 * or a zombie. undefined for any other process, and for one that is gone (the dump says so itself).
 */
export function notDumpable(pid: number): KernelThreadError | ZombieProcessError | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  const close = stat.lastIndexOf(')');
  const comm = stat.slice(stat.indexOf('(') + 1, close);
  // After comm: state, ppid, pgrp, session, tty_nr, tpgid, flags (fields 3 to 9).
  const [state, ppid, , , , , flags] = stat.slice(close + 2).split(' ');
  if ((Number(flags) & PF_KTHREAD) !== 0) return new KernelThreadError(pid, comm);
  if (state === 'Z') return new ZombieProcessError(pid, comm, Number(ppid));
  return undefined;
}

/** The target exited while it was being dumped. */
export class ExitedDuringDumpError extends ProcessGoneError {
  override name = 'ExitedDuringDumpError';
  constructor(info: NativeErrorInfo) {
    super(info, 'exited during the dump');
  }
}

/**
 * A dump's error as its caller should report it: the target going away mid-dump is a runtime outcome
 * ("process N exited during the dump"), not a pid that never existed.
 */
export function duringDump(e: unknown, pid: number): unknown {
  if (
    !(e instanceof ProcessGoneError) ||
    e instanceof ExitedDuringDumpError ||
    e instanceof ZombieProcessError
  )
    return e;
  return new ExitedDuringDumpError({
    errno: e.errno,
    code: e.code,
    syscall: e.syscall,
    pid,
    ...(e.path !== undefined ? { path: e.path } : {}),
  });
}

/** Runs fn and rethrows any native error as its typed class. */
export function native<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw fromNative(e);
  }
}
