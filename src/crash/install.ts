// Installing tripdump's handler in /proc/sys/kernel/core_pattern, and putting back exactly what was
// there. The handler reads its settings from a root-owned config file (the pattern, at most 127 bytes,
// only names that file); the previous pattern and core_pipe_limit are saved beside it, base64-encoded so
// that any byte comes back unchanged.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  constants,
  copyFileSync,
  existsSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
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

function copyHandler(configPath: string): string {
  const dest = installedHandlerPath(configPath);
  mkdirSync(path.dirname(dest), { recursive: true, mode: 0o755 });
  const tmp = `${dest}.${process.pid}.tmp`;
  try {
    copyFileSync(handlerPath(), tmp, constants.COPYFILE_EXCL);
    chmodSync(tmp, 0o755);
    renameSync(tmp, dest);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw sysError(e, 'copyfile', dest);
  }
  return dest;
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

/** Writes a root-only file atomically: temp name with O_EXCL|O_NOFOLLOW, then rename. */
function writePrivate(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.${process.pid}.tmp`;
  let fd: number | undefined;
  try {
    fd = openSync(
      tmp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    );
    writeSync(fd, text);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, file);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw sysError(e, 'open', tmp);
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

export interface InstallOptions {
  configPath?: string;
  dir?: string;
  socket?: string;
  maxUse?: number;
  keepFree?: number;
  keepFreePercent?: number;
  /** core_pattern's socket mode: the kernel connects to this listening socket (Linux 6.16+). */
  coreSocket?: string;
  /** Set core_pipe_limit (saved and restored like the pattern). */
  pipeLimit?: number;
}

export interface InstallResult {
  pattern: string;
  previous: string;
  config: CrashConfig;
  configPath: string;
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

export function install(opts: InstallOptions = {}): InstallResult {
  const configPath = path.resolve(opts.configPath ?? DEFAULT_CONFIG);
  const config: CrashConfig = {
    dir: path.resolve(opts.dir ?? DEFAULT_DIR),
    socket: path.resolve(opts.socket ?? DEFAULT_SOCKET),
    maxUse: opts.maxUse ?? 0,
    keepFree: opts.keepFree ?? 0,
    keepFreePercent: opts.keepFreePercent ?? 0,
  };
  if (!existsSync(handlerPath()))
    throw new SystemError(
      { errno: -2, code: 'ENOENT', syscall: 'stat', path: handlerPath() },
      `the handler is not built: ${handlerPath()} (npm run build:native)`,
    );
  const pattern = opts.coreSocket
    ? `@${path.resolve(opts.coreSocket)}`
    : pipePattern(configPath, installedHandlerPath(configPath));
  if (opts.coreSocket && !kernelSupportsSocketMode())
    throw new UsageError('core_pattern socket mode (@/path) needs Linux 6.16 or later');
  if (pattern.length > MAX_PATTERN) throw new UsageError(`core_pattern would be over ${MAX_PATTERN} bytes`);
  const current = readProc(CORE_PATTERN);
  const state = readState(configPath);
  mkdirSync(config.dir, { recursive: true, mode: 0o755 });
  // The handler refuses a folder others can write to (they could plant links in it).
  chmodSync(config.dir, lstatSync(config.dir).mode & 0o755);
  writePrivate(configPath, formatConfig(config));
  if (!opts.coreSocket) copyHandler(configPath);
  // Re-installing keeps the pattern saved the first time: the one to restore is the user's, not ours.
  const ours = installedMode(current.toString('latin1'), state) !== 'none' && state !== undefined;
  const saved: SavedState = ours
    ? { ...state, installed: pattern, installedAt: new Date().toISOString() }
    : {
        version: 1,
        corePattern: current.toString('base64'),
        corePipeLimit: readProc(CORE_PIPE_LIMIT).toString('latin1'),
        installed: pattern,
        installedAt: new Date().toISOString(),
      };
  writePrivate(statePath(configPath), `${JSON.stringify(saved, null, 2)}\n`);
  if (opts.pipeLimit !== undefined) writeProc(CORE_PIPE_LIMIT, String(opts.pipeLimit));
  writeProc(CORE_PATTERN, pattern);
  return {
    pattern,
    previous: Buffer.from(saved.corePattern, 'base64').toString('latin1'),
    config,
    configPath,
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
