// Where a .NET process's diagnostics socket is (dotnet/diagnostics ipc-protocol.md, "Naming and Location"):
// `$TMPDIR/dotnet-diagnostic-{pid}-{key}-socket`, with the *target's* TMPDIR (default /tmp), the pid as the
// target sees it (its own pid namespace) and key = its start time in clock ticks (field 22 of
// /proc/PID/stat), which also tells a live socket from the stale ones SIGKILLed processes leave behind.
// A target in another mount namespace is reached through /proc/PID/root. (Node opens every fd O_CLOEXEC.)
import { closeSync, constants, lstatSync, openSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { ProcessGoneError } from '../../errors.js';
import { processKey } from '../connections.js';
import { DotnetUnavailableError } from './errors.js';

/** sun_path holds 108 bytes with the terminating NUL: the runtime cuts longer names to 107. */
const SUN_PATH_MAX = 107;

export interface SocketLocation {
  pid: number;
  /** The pid inside the target's own pid namespace (what the socket name and ProcessInfo carry). */
  nsPid: number;
  startTicks: number;
  /** The socket as the target names it, inside its mount namespace. */
  targetPath: string;
  /** The same socket as tripdump reaches it (through /proc/PID/root when namespaces differ). */
  path: string;
  /** The target's temporary folder, inside its mount namespace. */
  tmpDir: string;
  /** Prefix that turns a path of the target's mount namespace into one tripdump can open ('' when shared). */
  root: string;
}

/** The target's environment, or undefined when it cannot be read (another user's process, unprivileged). */
export function targetEnvironment(pid: number): Map<string, string> | undefined {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw gone(pid, `/proc/${pid}/environ`);
    return undefined;
  }
  const env = new Map<string, string>();
  for (const entry of raw.split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

function gone(pid: number, file: string): ProcessGoneError {
  return new ProcessGoneError({ errno: -2, code: 'ENOENT', syscall: 'open', path: file, pid });
}

function namespacedPid(pid: number): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    throw gone(pid, `/proc/${pid}/status`);
  }
  const m = /^NSpid:\s*([\d\s]+)$/m.exec(status);
  const ids = m?.[1]?.trim().split(/\s+/).map(Number);
  return ids?.length ? ids[ids.length - 1]! : pid;
}

/** '' when the target shares our mount namespace, else /proc/PID/root. */
function rootOf(pid: number): string {
  try {
    if (readlinkSync(`/proc/${pid}/ns/mnt`) === readlinkSync('/proc/self/ns/mnt')) return '';
  } catch {
    // Unreadable namespace link (another user's process): /proc/PID/root works wherever we may connect.
  }
  return `/proc/${pid}/root`;
}

function isSocket(file: string): boolean {
  try {
    return lstatSync(file).isSocket();
  } catch {
    return false;
  }
}

/** Whether the process has the CoreCLR runtime mapped (a .NET process, socket or not). */
export function mapsCoreclr(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/maps`, 'latin1').includes('/libcoreclr.so');
  } catch {
    return false;
  }
}

function disabledBy(env: Map<string, string> | undefined): string | undefined {
  if (!env) return undefined;
  for (const prefix of ['DOTNET_', 'COMPlus_'])
    for (const name of ['EnableDiagnostics', 'EnableDiagnostics_IPC'])
      if (env.get(prefix + name) === '0') return `${prefix}${name}=0`;
  return undefined;
}

/** The socket's name for a target, without looking at the file system. */
export function socketName(tmpDir: string, nsPid: number, startTicks: number): string {
  const full = path.posix.join(tmpDir || '/tmp', `dotnet-diagnostic-${nsPid}-${startTicks}-socket`);
  return Buffer.byteLength(full) > SUN_PATH_MAX
    ? Buffer.from(full).subarray(0, SUN_PATH_MAX).toString('utf8')
    : full;
}

/**
 * Finds a process's diagnostics socket. Throws ProcessGoneError, or DotnetUnavailableError saying whether
 * the process is not .NET, has diagnostics disabled, or is .NET without a socket.
 */
export function locateSocket(pid: number): SocketLocation {
  const { startTicks } = processKey(pid);
  const env = targetEnvironment(pid);
  const tmpDir = env?.get('TMPDIR') || '/tmp';
  const nsPid = namespacedPid(pid);
  const root = rootOf(pid);
  const targetPath = socketName(tmpDir, nsPid, startTicks);
  const where = root + targetPath;
  if (isSocket(where)) return { pid, nsPid, startTicks, targetPath, path: where, tmpDir, root };
  const off = disabledBy(env);
  if (off)
    throw new DotnetUnavailableError(
      pid,
      'disabled',
      where,
      `.NET diagnostics are disabled in this process (${off}): it has no diagnostics socket`,
    );
  if (mapsCoreclr(pid))
    throw new DotnetUnavailableError(
      pid,
      'no-socket',
      where,
      `a .NET process without its diagnostics socket (${where} is missing; the runtime may still be starting, or the file was removed)`,
    );
  throw new DotnetUnavailableError(
    pid,
    'not-dotnet',
    where,
    'not a .NET process (no diagnostics socket, no libcoreclr.so mapped)',
  );
}

/**
 * A path to connect to: `sockPath` itself when it fits in sun_path, else a short alias through an open fd
 * of its folder (/proc/self/fd/N/name), which works for any length. Call release() once connected.
 */
export function connectablePath(sockPath: string): { path: string; release(): void } {
  if (Buffer.byteLength(sockPath) <= SUN_PATH_MAX) return { path: sockPath, release() {} };
  const fd = openSync(path.dirname(sockPath), constants.O_RDONLY | constants.O_DIRECTORY);
  return { path: `/proc/self/fd/${fd}/${path.basename(sockPath)}`, release: () => closeSync(fd) };
}
