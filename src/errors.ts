// Typed errors (design §3). Native code reports {errno, syscall, path?, pid?}; this module turns that into
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
  constructor(info: NativeErrorInfo) {
    super(info, `process ${info.pid ?? '?'} does not exist (${info.syscall}: ${info.code})`);
  }
}

/** Permission denied (EPERM/EACCES), with a hint naming the likely cause. */
export class AccessDeniedError extends SystemError {
  override name = 'AccessDeniedError';
  readonly hint: string;
  constructor(info: NativeErrorInfo) {
    const hint = accessHint(info.pid);
    super(
      info,
      `permission denied for ${info.pid ? `process ${info.pid}` : (info.path ?? 'the operation')} (${info.syscall}: ${info.code})${hint ? `: ${hint}` : ''}`,
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

function describe(info: NativeErrorInfo): string {
  const where = [info.path, info.pid ? `pid ${info.pid}` : undefined].filter(Boolean).join(', ');
  return `${info.syscall} failed: ${info.code}${where ? ` (${where})` : ''}${info.detail ? `: ${info.detail}` : ''}`;
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
    // A non-dumpable process (PR_SET_DUMPABLE 0, or after a setuid exec) has its /proc files owned by
    // root whatever its uid: ptrace and /proc/PID/mem then need CAP_SYS_PTRACE.
    try {
      if (uid !== undefined && statSync(`/proc/${pid}`).uid !== Number(uid))
        causes.push('it is not dumpable (PR_SET_DUMPABLE is 0, or it exec()ed a setuid program)');
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

/** Runs fn and rethrows any native error as its typed class. */
export function native<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw fromNative(e);
  }
}
