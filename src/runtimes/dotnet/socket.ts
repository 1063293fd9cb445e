// Where a .NET process's diagnostics socket is (dotnet/diagnostics ipc-protocol.md, "Naming and Location"):
// `$TMPDIR/dotnet-diagnostic-{pid}-{key}-socket`, with the *target's* TMPDIR (default /tmp), the pid as the
// target sees it (its own pid namespace) and key = its start time in clock ticks (field 22 of
// /proc/PID/stat), which also tells a live socket from the stale ones SIGKILLed processes leave behind.
// A target in another mount namespace is reached through /proc/PID/root. (Node opens every fd O_CLOEXEC.)
//
// Anyone may create a file in /tmp (or in a TMPDIR another user can write), so a socket at that path
// proves nothing: another user can listen there for a process that has none (not .NET, or diagnostics
// off) and tripdump, often root, would tell it what it does and believe its answers. Two checks, both
// before a byte is sent: the file must be a socket owned by the target's uid (locateSocket: refused
// without connecting), and the process listening on it must be the target itself (checkPeer: SO_PEERCRED
// of the connected socket, the kernel's record of who called listen()). The second is the one that
// counts: it holds even if the file is swapped between the lstat and the connect, and against a planter
// with the target's own uid.
import { closeSync, constants, lstatSync, openSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { ProcessGoneError } from '../../errors.js';
import { binding } from '../../native.js';
import { processKey } from '../connections.js';
import { DotnetUnavailableError, DotnetUntrustedSocketError, type SocketHolder } from './errors.js';

/** sun_path holds 108 bytes with the terminating NUL: the runtime cuts longer names to 107. */
const SUN_PATH_MAX = 107;

export interface SocketLocation {
  pid: number;
  /** The pid inside the target's own pid namespace (what the socket name and ProcessInfo carry). */
  nsPid: number;
  startTicks: number;
  /** The target's effective uid, which owns its socket. */
  uid: number;
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

function status(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    throw gone(pid, `/proc/${pid}/status`);
  }
}

function namespacedPid(text: string, pid: number): number {
  const m = /^NSpid:\s*([\d\s]+)$/m.exec(text);
  const ids = m?.[1]?.trim().split(/\s+/).map(Number);
  return ids?.length ? ids[ids.length - 1]! : pid;
}

/** The effective uid (second field of Uid:): what the runtime's socket file and its listen() carry. */
function effectiveUid(text: string, pid: number): number {
  const uid = Number(/^Uid:\s+\d+\s+(\d+)/m.exec(text)?.[1]);
  if (!Number.isInteger(uid)) throw gone(pid, `/proc/${pid}/status`);
  return uid;
}

/** "uid 65534 (nobody)": a user as /etc/passwd names it, for messages. */
export function describeUser(uid: number): string {
  let name: string | undefined;
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length > 2 && Number(f[2]) === uid && f[2] !== '') {
        name = f[0];
        break;
      }
    }
  } catch {
    // No passwd file (a minimal container): the number alone.
  }
  return name ? `uid ${uid} (${name})` : `uid ${uid}`;
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

/** lstat of the path, or undefined when nothing is there (a symlink is never followed to a socket). */
function lstatOrNothing(file: string): Stats | undefined {
  try {
    return lstatSync(file);
  } catch {
    return undefined;
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
  const text = status(pid);
  const nsPid = namespacedPid(text, pid);
  const uid = effectiveUid(text, pid);
  const root = rootOf(pid);
  const targetPath = socketName(tmpDir, nsPid, startTicks);
  const where = root + targetPath;
  const st = lstatOrNothing(where);
  if (st?.isSocket()) {
    if (st.uid !== uid)
      throw new DotnetUntrustedSocketError(
        pid,
        where,
        { uid: st.uid },
        uid,
        `the file is owned by ${describeUser(st.uid)}, not by the target's ${describeUser(uid)} (anyone may create it; the target's runtime did not)`,
      );
    return { pid, nsPid, startTicks, uid, targetPath, path: where, tmpDir, root };
  }
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

/**
 * Checks, on a connected socket and before anything is written, that the process listening on it is the
 * target: SO_PEERCRED gives the pid (in our pid namespace, however deep the target's is) and the effective
 * uid of whoever called listen(), which for a real diagnostics port is the target's runtime. Throws
 * DotnetUntrustedSocketError otherwise, and when it cannot be checked (fail closed).
 */
export function checkPeer(socket: net.Socket, pid: number, socketPath: string): void {
  const uid = effectiveUid(status(pid), pid);
  // net.Socket keeps its fd on the handle (libuv's pipe); Node has no public way to ask for SO_PEERCRED.
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  let holder: SocketHolder;
  try {
    if (typeof fd !== 'number' || fd < 0) throw new Error('the connection has no file descriptor');
    holder = binding().peerCredentials(fd);
  } catch (e) {
    throw new DotnetUntrustedSocketError(
      pid,
      socketPath,
      undefined,
      uid,
      `cannot tell who listens on it (${(e as Error).message})`,
    );
  }
  if (holder.pid === pid && holder.uid === uid) return;
  const who =
    holder.pid === 0
      ? `a process outside tripdump's pid namespace, ${describeUser(holder.uid)}`
      : `process ${holder.pid}, ${describeUser(holder.uid)}`;
  throw new DotnetUntrustedSocketError(
    pid,
    socketPath,
    { uid: holder.uid, pid: holder.pid },
    uid,
    `it is held by ${who}, not by the target (process ${pid}, ${describeUser(uid)})`,
  );
}
