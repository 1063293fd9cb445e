// Installing tripdump's handler in /proc/sys/kernel/core_pattern, and putting back exactly what was
// there. The handler reads its settings from a root-owned config file (the pattern, at most 127 bytes,
// only names that file); the previous pattern and core_pipe_limit are saved beside it, base64-encoded so
// that any byte comes back unchanged.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmdirSync,
  rmSync,
  type Stats,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { SystemError, UsageError } from '../errors.js';
import { nativeDir } from '../native.js';
import { DEFAULT_SOCKET } from './protocol.js';

export const CORE_PATTERN = '/proc/sys/kernel/core_pattern';
export const CORE_PIPE_LIMIT = '/proc/sys/kernel/core_pipe_limit';
export const DEFAULT_CONFIG = '/etc/tripdump/crash.conf';
export const DEFAULT_DIR = '/var/lib/tripdump/crashes';
export const DEFAULT_CORE_SOCKET = '/run/tripdump/coredump.sock';
/** The kernel's CORENAME_MAX_SIZE is 128 including the terminating NUL. */
const MAX_PATTERN = 127;
const SPECIFIERS = '%P %p %u %g %s %t %c %h %e %d %F';

export interface CrashConfig {
  dir: string;
  socket: string;
  maxUse: number;
  keepFree: number;
  keepFreePercent: number;
}

export interface SavedState {
  version: 1;
  /** The exact bytes of core_pattern before install, base64. */
  corePattern: string;
  corePipeLimit: string;
  installed: string;
  installedAt: string;
}

/** The handler executable beside the addon (built by binding.gyp, or prebuilt in the package). */
export function handlerPath(): string {
  return path.join(nativeDir(), 'tripdump-crash-handler');
}

/**
 * Where install puts its copy of the handler: beside the config, in a root-owned folder. core_pattern must
 * not point into the package's build folder, which a rebuild or an upgrade removes: the kernel would then
 * drop every core until someone noticed.
 */
export function installedHandlerPath(configPath: string): string {
  return path.join(path.dirname(configPath), 'tripdump-crash-handler');
}

export function statePath(configPath: string): string {
  return `${configPath}.saved`;
}

function sysError(e: unknown, syscall: string, file: string): unknown {
  const err = e as NodeJS.ErrnoException;
  if (typeof err?.code !== 'string') return e;
  return new SystemError({
    errno: err.errno ?? 0,
    code: err.code,
    syscall: err.syscall ?? syscall,
    path: file,
  });
}

export function readProc(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw sysError(e, 'open', file);
  }
}

/** Writes a sysctl the way the kernel expects: one write, the value without its trailing newline. */
export function writeProc(file: string, value: Buffer | string): void {
  const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value);
  const body = bytes.length && bytes[bytes.length - 1] === 0x0a ? bytes.subarray(0, -1) : bytes;
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_TRUNC);
    // An empty pattern needs a write of "\n": a zero-length write changes nothing.
    writeSync(fd, body.length ? body : Buffer.from('\n'));
  } catch (e) {
    throw sysError(e, fd === undefined ? 'open' : 'write', file);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes a file whole: temp name with O_EXCL|O_NOFOLLOW, fsync, then rename over `file`. */
function writeAtomic(file: string, bytes: Buffer | string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  let fd: number | undefined;
  try {
    fd = openSync(
      tmp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      mode,
    );
    writeFileSync(fd, bytes);
    fchmodSync(fd, mode); // the umask can only have taken bits away
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, file);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw sysError(e, 'open', file);
  }
}

export function formatConfig(c: CrashConfig): string {
  return [
    '# tripdump crash handler settings (written by `tripdump crash-handler install`)',
    `dir=${c.dir}`,
    `socket=${c.socket}`,
    `max_use=${c.maxUse}`,
    `keep_free=${c.keepFree}`,
    `keep_free_percent=${c.keepFreePercent}`,
    '',
  ].join('\n');
}

export function parseConfig(text: string): CrashConfig {
  const c: CrashConfig = {
    dir: DEFAULT_DIR,
    socket: DEFAULT_SOCKET,
    maxUse: 0,
    keepFree: 0,
    keepFreePercent: 0,
  };
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-z_]+)=(.*)$/);
    if (!m) continue;
    const [, key, value] = m as unknown as [string, string, string];
    if (key === 'dir') c.dir = value;
    else if (key === 'socket') c.socket = value;
    else if (key === 'max_use') c.maxUse = Number(value) || 0;
    else if (key === 'keep_free') c.keepFree = Number(value) || 0;
    else if (key === 'keep_free_percent') c.keepFreePercent = Number(value) || 0;
  }
  return c;
}

export function readConfig(configPath = DEFAULT_CONFIG): CrashConfig | undefined {
  if (!existsSync(configPath)) return undefined;
  return parseConfig(readProc(configPath).toString('utf8'));
}

export function pipePattern(configPath: string, handler = handlerPath()): string {
  for (const [what, p] of [
    ['handler path', handler],
    ['config path', configPath],
  ] as const)
    if (/\s|%/.test(p))
      throw new UsageError(`the ${what} '${p}' contains a space or '%', which core_pattern cannot carry`);
  const config = configPath === DEFAULT_CONFIG ? '' : ` -c ${configPath}`;
  const pattern = `|${handler}${config} ${SPECIFIERS}`;
  if (pattern.length > MAX_PATTERN)
    throw new UsageError(
      `core_pattern would be ${pattern.length} bytes, over the kernel's ${MAX_PATTERN}: use a shorter --config path or install the package higher up`,
    );
  return pattern;
}

export type InstalledMode = 'pipe' | 'socket' | 'none';

/** What the current pattern is, as far as tripdump is concerned. */
export function installedMode(pattern: string, state: SavedState | undefined): InstalledMode {
  const p = pattern.replace(/\n$/, '');
  if (p.startsWith('|') && p.split(' ')[0]?.endsWith('/tripdump-crash-handler')) return 'pipe';
  if (state && p === state.installed && p.startsWith('@')) return 'socket';
  return 'none';
}

export function readState(configPath = DEFAULT_CONFIG): SavedState | undefined {
  const file = statePath(configPath);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readProc(file).toString('utf8')) as SavedState;
}

/** Documented ranges of install's numbers; anything outside is refused before anything is written. */
export const CRASH_LIMITS = {
  /** max-use and keep-free as sizes: 1 MiB to 1 PiB. */
  size: { min: 2 ** 20, max: 2 ** 50 },
  /** keep-free as a share of the file system. */
  keepFreePercent: { min: 1, max: 99 },
  /** core_pipe_limit: 0 (the kernel does not wait for the handler) to 65536 crashes handled at once. */
  pipeLimit: { min: 0, max: 65536 },
} as const;

/**
 * core_pipe_limit set by a default install. With 0 the kernel does not wait for the handler: the crashing
 * process is reaped while its core is still being read, and /proc/PID (exe, cmdline, cwd, cgroup) is gone
 * by the time the handler looks. A non-zero limit makes the kernel wait; it is also how many crashes are
 * captured at once, beyond which the kernel skips the core (systemd-coredump sets 16).
 */
export const DEFAULT_PIPE_LIMIT = 64;

/** Throws a UsageError naming `name` unless `value` is a whole number within `range`. */
export function checkRange(name: string, value: number, range: { min: number; max: number }): void {
  if (!Number.isSafeInteger(value) || value < range.min || value > range.max)
    throw new UsageError(
      `${name} must be a whole number from ${range.min} to ${range.max}, got ${value}`,
      name,
    );
}

export interface InstallOptions {
  configPath?: string;
  dir?: string;
  socket?: string;
  maxUse?: number;
  keepFree?: number;
  keepFreePercent?: number;
  /** core_pattern's socket mode: the kernel connects to this listening socket (Linux 6.16+). */
  coreSocket?: string;
  /** core_pipe_limit to set (default DEFAULT_PIPE_LIMIT); saved and restored like the pattern. */
  pipeLimit?: number;
}

export interface InstallResult {
  pattern: string;
  previous: string;
  config: CrashConfig;
  configPath: string;
  pipeLimit: number;
  previousPipeLimit: number;
  /** Set when the cores go somewhere else than the folder asked for, and why. */
  note?: string;
}

/** Kernel support for core_pattern's `@` socket mode (6.16+): the write is refused before that. */
export function kernelSupportsSocketMode(): boolean {
  const [maj, min] = (
    readProc('/proc/sys/kernel/osrelease')
      .toString()
      .match(/^(\d+)\.(\d+)/) ?? []
  )
    .slice(1)
    .map(Number);
  return maj !== undefined && min !== undefined && (maj > 6 || (maj === 6 && min >= 16));
}

function lstatOrUndefined(p: string): Stats | undefined {
  try {
    return lstatSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw sysError(e, 'lstat', p);
  }
}

/** Root's own folder (or the installing user's), which nobody else can write to: what the handler accepts. */
function isPrivate(st: Stats): boolean {
  return st.isDirectory() && (st.uid === 0 || st.uid === process.geteuid?.()) && (st.mode & 0o022) === 0;
}

/**
 * A folder path with every symlink resolved — the handler opens its paths with RESOLVE_NO_SYMLINKS, so a
 * link anywhere in them would make it drop every crash — and the folders that must be created for it,
 * outermost first. Nothing is created here.
 */
function resolveFolder(what: string, requested: string): { real: string; create: string[] } {
  if (/[\n\0]/.test(requested))
    throw new UsageError(`${what} '${JSON.stringify(requested)}' holds a newline or NUL`);
  const missing: string[] = [];
  let existing = path.resolve(requested);
  while (!lstatOrUndefined(existing)) {
    missing.unshift(path.basename(existing));
    existing = path.dirname(existing);
  }
  let real: string;
  try {
    real = realpathSync(existing);
  } catch (e) {
    throw sysError(e, 'realpath', existing);
  }
  if (!statSync(real).isDirectory())
    throw new UsageError(`${what} '${requested}': ${existing} exists and is not a folder`);
  const create: string[] = [];
  for (const name of missing) create.push(path.join(create.at(-1) ?? real, name));
  return { real: create.at(-1) ?? real, create };
}

/** Where the cores go: the folder asked for, or a private one inside it (never a chmod of someone's folder). */
function planCrashFolder(requested: string): { dir: string; create: string[]; note?: string } {
  const { real, create } = resolveFolder('--dir', requested);
  if (create.length) return { dir: real, create };
  const st = statSync(real);
  if (isPrivate(st)) return { dir: real, create };
  const sub = path.join(real, 'tripdump-crashes');
  const why = `${real} is ${st.mode & 0o022 ? `writable by ${st.mode & 0o002 ? 'others' : 'its group'}` : `owned by uid ${st.uid}`} (mode ${(st.mode & 0o7777).toString(8)}), which the handler refuses and tripdump does not change: cores go to the private folder ${sub}`;
  const existing = lstatOrUndefined(sub);
  if (!existing) return { dir: sub, create: [sub], note: why };
  if (!isPrivate(existing) || existing.isSymbolicLink())
    throw new UsageError(
      `${real} is not a private folder and ${sub} already exists but is not a private folder either (a link, another owner, or writable by others): choose another --dir`,
      '--dir',
    );
  return { dir: sub, create: [], note: why };
}

/** A file written whole (temp name, O_EXCL|O_NOFOLLOW, fsync, rename); returns how to put back what was there. */
function replaceFile(file: string, bytes: Buffer | string, mode: number): () => void {
  const before = lstatOrUndefined(file);
  const previous = before?.isFile() ? readFileSync(file) : undefined;
  writeAtomic(file, bytes, mode);
  return () => {
    if (previous) writeAtomic(file, previous, (before?.mode ?? mode) & 0o7777);
    else rmSync(file, { force: true });
  };
}

/**
 * Saves core_pattern and core_pipe_limit, then installs tripdump's handler. Every argument is checked
 * first; if any step then fails, the steps before it are undone: an install happens whole or leaves
 * nothing behind (no config, saved state, handler copy or folder).
 */
export function install(opts: InstallOptions = {}): InstallResult {
  // 1. Everything checked, nothing written.
  for (const [name, value] of [
    ['maxUse', opts.maxUse],
    ['keepFree', opts.keepFree],
  ] as const)
    if (value !== undefined) checkRange(name, value, CRASH_LIMITS.size);
  if (opts.keepFreePercent !== undefined)
    checkRange('keepFreePercent', opts.keepFreePercent, CRASH_LIMITS.keepFreePercent);
  if (opts.keepFree !== undefined && opts.keepFreePercent !== undefined)
    throw new UsageError('keep-free is either a size or a percentage, not both');
  const pipeLimit = opts.pipeLimit ?? DEFAULT_PIPE_LIMIT;
  checkRange('pipeLimit', pipeLimit, CRASH_LIMITS.pipeLimit);
  const requestedConfig = path.resolve(opts.configPath ?? DEFAULT_CONFIG);
  if (!path.basename(requestedConfig) || requestedConfig.endsWith('/'))
    throw new UsageError(`the config path '${requestedConfig}' names a folder, not a file`);
  const configFolder = resolveFolder('the config folder', path.dirname(requestedConfig));
  const configPath = path.join(configFolder.real, path.basename(requestedConfig));
  const configDirSt = configFolder.create.length ? undefined : statSync(configFolder.real);
  // The handler copy goes beside the config and root runs it for every crash: nobody else may write there.
  if (configDirSt && !isPrivate(configDirSt))
    throw new UsageError(
      `the config folder ${configFolder.real} can be written by others or is not root's (mode ${(configDirSt.mode & 0o7777).toString(8)}, uid ${configDirSt.uid}): the handler copy root runs would be exposed; use another --config`,
    );
  const configSt = lstatOrUndefined(configPath);
  if (configSt && !configSt.isFile())
    throw new UsageError(`the config path ${configPath} exists and is not a regular file`);
  const socket = path.resolve(opts.socket ?? DEFAULT_SOCKET);
  if (/[\n\0]/.test(socket))
    throw new UsageError(`the notify socket path ${JSON.stringify(socket)} holds a newline or NUL`);
  const folder = planCrashFolder(opts.dir ?? DEFAULT_DIR);
  const config: CrashConfig = {
    dir: folder.dir,
    socket,
    maxUse: opts.maxUse ?? 0,
    keepFree: opts.keepFree ?? 0,
    keepFreePercent: opts.keepFreePercent ?? 0,
  };
  const handler = handlerPath();
  if (!existsSync(handler))
    throw new SystemError(
      { errno: -2, code: 'ENOENT', syscall: 'stat', path: handler },
      `the handler is not built: ${handler} (npm run build:native)`,
    );
  if (opts.coreSocket && !kernelSupportsSocketMode())
    throw new UsageError('core_pattern socket mode (@/path) needs Linux 6.16 or later');

  const pattern = opts.coreSocket
    ? `@${path.resolve(opts.coreSocket)}`
    : pipePattern(configPath, installedHandlerPath(configPath));
  if (pattern.length > MAX_PATTERN) throw new UsageError(`core_pattern would be over ${MAX_PATTERN} bytes`);
  const current = readProc(CORE_PATTERN);
  const currentLimit = readProc(CORE_PIPE_LIMIT);
  const state = readState(configPath);
  // Re-installing keeps the values saved the first time: the ones to restore are the user's, not ours.
  const ours = installedMode(current.toString('latin1'), state) !== 'none' && state !== undefined;
  const saved: SavedState = ours
    ? { ...state, installed: pattern, installedAt: new Date().toISOString() }
    : {
        version: 1,
        corePattern: current.toString('base64'),
        corePipeLimit: currentLimit.toString('latin1'),
        installed: pattern,
        installedAt: new Date().toISOString(),
      };

  // 2. The steps, each with its undo.
  const undo: (() => void)[] = [];
  try {
    for (const d of new Set([...configFolder.create, ...folder.create])) {
      mkdirSync(d, { mode: 0o755 });
      undo.push(() => rmdirSync(d));
    }
    undo.push(replaceFile(configPath, formatConfig(config), 0o600));
    if (!opts.coreSocket)
      undo.push(replaceFile(installedHandlerPath(configPath), readFileSync(handler), 0o755));
    undo.push(replaceFile(statePath(configPath), `${JSON.stringify(saved, null, 2)}\n`, 0o600));
    writeProc(CORE_PIPE_LIMIT, String(pipeLimit));
    undo.push(() => writeProc(CORE_PIPE_LIMIT, currentLimit));
    try {
      writeProc(CORE_PATTERN, pattern);
    } catch (e) {
      // The kernel takes an @/path pattern only from its initial mount namespace (not from a container,
      // nor after unshare -m), and says no more than EINVAL.
      if (opts.coreSocket && e instanceof SystemError && e.code === 'EINVAL')
        throw new SystemError(
          { errno: e.errno, code: e.code, syscall: e.syscall, path: CORE_PATTERN },
          `the kernel refused core_pattern ${pattern} (EINVAL): socket mode can only be set from the host's initial mount namespace`,
        );
      throw e;
    }
  } catch (e) {
    for (const step of undo.reverse()) {
      try {
        step();
      } catch {
        // best effort: the error that stopped the install is the one to report
      }
    }
    throw e;
  }
  return {
    pattern,
    previous: Buffer.from(saved.corePattern, 'base64').toString('latin1'),
    config,
    configPath,
    pipeLimit,
    previousPipeLimit: Number(saved.corePipeLimit.trim()),
    ...(folder.note ? { note: folder.note } : {}),
  };
}

export interface UninstallResult {
  restored: string;
  replacedOther: boolean;
}

/**
 * Restores the saved pattern and core_pipe_limit byte for byte. When core_pattern no longer holds what
 * tripdump installed (someone changed it since), it is left alone unless `force`.
 */
export function uninstall(opts: { configPath?: string; force?: boolean } = {}): UninstallResult {
  const configPath = path.resolve(opts.configPath ?? DEFAULT_CONFIG);
  const state = readState(configPath);
  if (!state) throw new UsageError(`tripdump's crash handler is not installed (no ${statePath(configPath)})`);
  const current = readProc(CORE_PATTERN).toString('latin1').replace(/\n$/, '');
  const replacedOther = current !== state.installed;
  if (replacedOther && !opts.force)
    throw new UsageError(
      `core_pattern is now '${current}', not what tripdump installed; --force restores the saved one anyway`,
    );
  const previous = Buffer.from(state.corePattern, 'base64');
  writeProc(CORE_PIPE_LIMIT, state.corePipeLimit);
  writeProc(CORE_PATTERN, previous);
  rmSync(statePath(configPath), { force: true });
  rmSync(installedHandlerPath(configPath), { force: true });
  return { restored: previous.toString('latin1').replace(/\n$/, ''), replacedOther };
}

export interface Status {
  corePattern: string;
  corePipeLimit: number;
  mode: InstalledMode;
  configPath: string;
  config: CrashConfig | undefined;
  saved: string | undefined;
  socketModeSupported: boolean;
}

export function status(configPath = DEFAULT_CONFIG): Status {
  const state = readState(configPath);
  const corePattern = readProc(CORE_PATTERN).toString('latin1').replace(/\n$/, '');
  return {
    corePattern,
    corePipeLimit: Number(readProc(CORE_PIPE_LIMIT).toString().trim()),
    mode: installedMode(corePattern, state),
    configPath,
    config: readConfig(configPath),
    saved: state ? Buffer.from(state.corePattern, 'base64').toString('latin1').replace(/\n$/, '') : undefined,
    socketModeSupported: kernelSupportsSocketMode(),
  };
}

/**
 * core_pattern's socket mode: the handler executable in `serve` mode listens on `socketPath`, and the
 * kernel connects to it and writes each core there (no process started per crash). It stores cores and
 * notifies exactly as the pipe helper does. Resolves once it listens; stop() ends it by its pid.
 */
export class CoreSocketServer {
  readonly socketPath: string;
  readonly configPath: string;
  #child: ChildProcess | undefined;

  constructor(socketPath = DEFAULT_CORE_SOCKET, configPath = DEFAULT_CONFIG) {
    this.socketPath = path.resolve(socketPath);
    this.configPath = path.resolve(configPath);
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  async start(signal?: AbortSignal): Promise<void> {
    mkdirSync(path.dirname(this.socketPath), { recursive: true, mode: 0o700 });
    const child = spawn(handlerPath(), ['serve', '-c', this.configPath, '--listen', this.socketPath], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.#child = child;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('listening ')) resolve();
      });
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`tripdump-crash-handler serve exited (${code})`)));
    });
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
    await exited;
  }
}
