// Typed errors of the .NET diagnostics port: why a target cannot be reached, what the runtime refused, and
// what was malformed on the wire. System-level failures (no such process, permission) use the shared
// classes of src/errors.ts.
import { TripdumpError } from '../../errors.js';

/** Why a process has no diagnostics port tripdump can use. */
export type NoPortReason =
  /** Not a .NET (CoreCLR) process. */
  | 'not-dotnet'
  /** A .NET process started with DOTNET_EnableDiagnostics=0 (or its _IPC variant): no socket, by choice. */
  | 'disabled'
  /** A .NET process whose socket is missing or refuses connections (deleted, or the runtime is starting). */
  | 'no-socket'
  /** Something is at the socket's path that is not the target's own: refused before a byte is sent. */
  | 'untrusted';

export class DotnetUnavailableError extends TripdumpError {
  override name = 'DotnetUnavailableError';
  readonly code: string = 'ENOTDOTNET';
  constructor(
    readonly pid: number,
    readonly reason: NoPortReason,
    readonly path: string | undefined,
    detail: string,
  ) {
    super(`process ${pid}: ${detail}`);
  }
}

/** Who holds a diagnostics socket: the file's owner, or the process listening on it (SO_PEERCRED). */
export interface SocketHolder {
  uid: number;
  /** The listening process (its pid as tripdump sees it; 0 when it is not visible from here). */
  pid?: number;
}

/**
 * A diagnostics socket that is not the target's runtime's: a file at its path owned by another user, or a
 * listener that is another process. Anyone may create a file in /tmp, so the path alone proves nothing;
 * nothing was sent to it. Places that fall back when a process has no usable port (the ptrace dump
 * writer) fall back on this too, since it is a DotnetUnavailableError.
 */
export class DotnetUntrustedSocketError extends DotnetUnavailableError {
  override name = 'DotnetUntrustedSocketError';
  override readonly code = 'EDOTNETUNTRUSTED';
  constructor(
    pid: number,
    path: string,
    /** Who holds it; undefined when that could not be found out. */
    readonly holder: SocketHolder | undefined,
    readonly targetUid: number,
    why: string,
  ) {
    super(pid, 'untrusted', path, `refusing the diagnostics socket ${path}: ${why}; nothing was sent to it`);
  }
}

/**
 * The runtime would not share its System.Diagnostics.Metrics session (Meter instruments) with tripdump:
 * another tool holds it privately, or shares it with another interval. Ends the subscribers that read
 * Meters; EventCounters and runtime events are not affected.
 */
export class DotnetMetricsSessionError extends TripdumpError {
  override name = 'DotnetMetricsSessionError';
  readonly code = 'EDOTNETMETRICS';
  constructor(
    readonly pid: number,
    /** private: another client's own session runs; settings: the shared one runs with another interval. */
    readonly reason: 'private' | 'settings',
    detail: string,
  ) {
    super(`process ${pid}: ${detail}`);
  }
}

/** The runtime answered a command with an error (an HRESULT, and for dumps createdump's own message). */
export class DotnetRuntimeError extends TripdumpError {
  override name = 'DotnetRuntimeError';
  readonly code = 'EDOTNETRUNTIME';
  constructor(
    readonly pid: number,
    readonly command: string,
    readonly hresult: number,
    readonly runtimeMessage: string | undefined,
  ) {
    super(
      `process ${pid}: the .NET runtime refused ${command} (HRESULT 0x${hresult.toString(16).padStart(8, '0')}${hresultName(hresult)})${runtimeMessage ? `: ${runtimeMessage.trim()}` : ''}`,
    );
  }
}

/** Bytes on the diagnostics socket that break the IPC protocol or the nettrace format. */
export class DotnetProtocolError extends TripdumpError {
  override name = 'DotnetProtocolError';
  readonly code = 'EDOTNETPROTO';
  constructor(
    readonly pid: number | undefined,
    readonly detail: string,
  ) {
    super(`${pid !== undefined ? `process ${pid}: ` : ''}malformed diagnostics data: ${detail}`);
  }
}

/** The runtime did not answer in time. */
export class DotnetTimeoutError extends TripdumpError {
  override name = 'DotnetTimeoutError';
  readonly code = 'ETIMEDOUT';
  constructor(
    readonly pid: number,
    readonly command: string,
    readonly timeoutMs: number,
  ) {
    super(`process ${pid}: no answer to ${command} within ${timeoutMs} ms`);
  }
}

export const HRESULT = {
  badEncoding: 0x80131384,
  unknownCommand: 0x80131385,
  unknownMagic: 0x80131386,
  unknownError: 0x80131387,
  notSupported: 0x80131515,
  invalidArgument: 0x80070057,
} as const;

function hresultName(hr: number): string {
  const name = Object.entries(HRESULT).find(([, v]) => v === hr)?.[0];
  return name ? `, ${name}` : '';
}
