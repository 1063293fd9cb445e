// Finds the addon with node-gyp-build (a build from source first, else the prebuilt binary for this
// platform shipped in the package), loads it and checks, once, that it is the one this code was written
// against: a stale build with another field order would silently put values under the wrong names.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CoreDumpResult } from './dump/core.js';
import { FIELD_NAMES } from './sampler/fields.js';

export interface NativeIdentity {
  pid: number;
  startTime: number;
}

export interface NativeHostSample {
  cpuPercent: number;
  cpus: number;
  memTotalBytes: number;
  memAvailableBytes: number | null;
  memFreeBytes: number;
  swapTotalBytes: number;
  swapFreeBytes: number;
  load1: number;
  load5: number;
  load15: number;
  runnable: number;
  processes: number;
}

export interface NativeSweep {
  buffer: ArrayBuffer;
  capacity: number;
  rows: number;
  generation: number;
  time: number;
  durationMs: number;
  /** (pid, startTime) pairs. */
  started: Float64Array;
  exited: Float64Array;
  host?: NativeHostSample;
}

export interface NativeSamplerOptions {
  fields: number;
  all: boolean;
  children: boolean;
  threads: boolean;
  host: boolean;
  keep: number;
  sweepThreads: number;
}

export interface NativeSampler {
  watch(pid: number, options?: { children?: boolean; threads?: boolean }): NativeIdentity;
  unwatch(pid: number): void;
  sample(): NativeSweep;
  sampleAsync(): Promise<NativeSweep>;
  /** conditions: (pid, field index or -1, above ? 1 : 0, threshold) quadruples. */
  sampleUntil(
    intervalMs: number,
    waitMs: number,
    conditions: Float64Array,
    maxBatch: number,
  ): Promise<NativeSweep[]>;
  wake(): void;
  watchAsync(
    pids: Int32Array,
    options: { children?: boolean; threads?: boolean },
  ): Promise<{ ids: Float64Array; errors: (number | Error)[] }>;
  close(): void;
  readonly size: number;
}

export interface ColumnLayout {
  bytes: number;
  comm: number;
  changed: number;
  unavailable: number;
  flags: number;
}

/** What the native signal watcher reports (see NativeBinding.watchSignals). */
export type SignalEvent =
  | { type: 'attached' }
  /** A watched signal is held at its delivery stop and every thread is stopped: answer() exactly once. */
  | { type: 'signal'; signo: number; tid: number /** ms since the epoch */; time: number }
  /** Follows an answer with a path. */
  | { type: 'dumped'; result: CoreDumpResult }
  /** Follows an answer with a path; the error carries errno/code/syscall/path/pid like other native errors. */
  | { type: 'dump-error'; error: Error }
  /** The target exited; status is its exit code, or 128 + signal when a signal killed it. */
  | { type: 'exit'; status: number; signal: number | null };

export interface SignalAnswer {
  path: string;
  /** Signal-triggered dumps are written in stop mode: the threads are held anyway ('snapshot' warns). */
  mode: 'stop' | 'snapshot' | 'auto';
  filter?: number;
  overwrite: boolean;
}

export interface NativeSignalWatch {
  /** Answers the pending 'signal' event: null lets the signal go on without a dump. */
  answer(a: null | SignalAnswer): void;
  /** Ends the watch: every thread is detached and a held signal is delivered. Idempotent. */
  stop(): void;
  /** Settles when the watcher has let go of the target (stop() or the target's exit); rejects if it died. */
  done: Promise<void>;
}

/** A listening TCP socket (inspector/listeners.h). */
export interface NativeTcpListener {
  address: string;
  port: number;
  v6: boolean;
  inode: number;
}

/** An output file being written (dump/output_file.h): appended in order, named only by commit(). */
export interface NativeOutputFile {
  /** Appends; one write in flight at a time. Resolves with the bytes written. */
  write(data: Buffer | Buffer[]): Promise<number>;
  /** Appends the text JSON string literals' contents stand for (EILSEQ when malformed). */
  writeJsonText(escaped: Buffer | Buffer[]): Promise<number>;
  /** Gives the file its final name (EEXIST if taken, unless overwrite). */
  commit(): void;
  /** Releases it; uncommitted, nothing is left behind. Idempotent. */
  close(): void;
}

export interface NativeBinding {
  /**
   * Intercepts the signals the target receives (PTRACE_SEIZE of every thread, in a forked watcher
   * process). Unwatched signals pass straight through; a watched one is reported and held until answered,
   * then re-delivered as it was sent. Throws synchronously (errno/code/syscall/pid) when the process is
   * missing, not permitted, or already traced.
   */
  watchSignals(pid: number, signals: number[], onEvent: (e: SignalEvent) => void): NativeSignalWatch;
  writeCoreDump(
    pid: number,
    path: string,
    options: { mode: string; filter?: number; overwrite: boolean },
    onProgress?: (done: number, total: number) => void,
  ): { promise: Promise<CoreDumpResult>; cancel(): void };
  NativeSampler: new (options: NativeSamplerOptions) => NativeSampler;
  fieldNames: string[];
  commMax: number;
  layout(capacity: number): ColumnLayout;
  /** The process-wide budget of kept fds; with a limit, caps it first. */
  fdBudget(limit?: number): { limit: number; inUse: number };
  /** The process's own listening TCP sockets, or (all) every listener in its network namespace. */
  tcpListeners(pid: number, all: boolean): NativeTcpListener[];
  /** Whether the process is in another network namespace than ours. */
  otherNetns(pid: number): boolean;
  /** A socket connected to address:port from inside pid's network namespace; the caller owns the fd. */
  connectTcp(pid: number, address: string, port: number, timeoutMs: number): number;
  /** SO_PEERCRED of a connected Unix socket: the listener's pid (0 if not visible from here) and ids. */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  /**
   * Starts the inspector guard (inspector/guard.h), which sends SIGUSR1 to open the target's inspector at
   * once; returns our end of its control socket (EOF: the guard has exited).
   */
  startInspectorGuard(options: {
    pid: number;
    startTicks: number;
    openTimeoutMs: number;
    lateWatchMs: number;
    probeMessage: string;
    closeMessage: string;
  }): number;
  /** Throws EEXIST at once when the name is taken (and not overwrite). */
  OutputFile: new (
    path: string,
    overwrite: boolean,
  ) => NativeOutputFile;
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };

let found: string | undefined;
/**
 * The addon this installation uses, as node-gyp-build chooses it: build/Release when it was built from
 * source, else the prebuilt binary in prebuilds/<platform>-<arch> whose tags fit (Node-API, glibc).
 */
export function addonPath(): string {
  if (found) return found;
  try {
    found = nodeGypBuild.path(root);
    return found;
  } catch (e) {
    throw new Error(
      `tripdump: no native addon for this platform (run \`npm rebuild tripdump --build-from-source\`, or \`npm run build:native\` in a checkout): ${(e as Error).message.trim()}`,
    );
  }
}

/**
 * The folder of the native files that go with the addon: tripdump-crash-handler and libtripdump.so sit
 * beside it, whether built from source (build/Release) or prebuilt (prebuilds/linux-<arch>).
 */
export function nativeDir(): string {
  return path.dirname(addonPath());
}

function load(): NativeBinding {
  const file = addonPath();
  let binding: NativeBinding;
  try {
    binding = require(file) as NativeBinding;
  } catch (e) {
    throw new Error(
      `tripdump: cannot load the native addon ${file} (run \`npm rebuild tripdump --build-from-source\`): ${(e as Error).message}`,
    );
  }
  return check(binding, file);
}

function check(binding: NativeBinding, where: string): NativeBinding {
  const names = binding.fieldNames;
  if (
    typeof binding.NativeSampler !== 'function' ||
    typeof binding.writeCoreDump !== 'function' ||
    typeof binding.watchSignals !== 'function' ||
    typeof binding.layout !== 'function' ||
    !Array.isArray(names) ||
    names.length !== FIELD_NAMES.length ||
    names.some((n, i) => n !== FIELD_NAMES[i])
  )
    throw new Error(
      `${where} does not match this version of tripdump (rebuild it with \`npm run build:native\`)`,
    );
  return binding;
}

let cached: NativeBinding | undefined;
/** The addon, loaded on first use. */
export function binding(): NativeBinding {
  cached ??= load();
  return cached;
}
