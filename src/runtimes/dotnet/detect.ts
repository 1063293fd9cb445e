// Is this process .NET, and which runtime? Cheap: one stat of the socket the runtime would have; the
// version comes from ProcessInfo2 (a few ms), asked only for processes that have a socket.
import { ProcessGoneError } from '../../errors.js';
import { DotnetUnavailableError } from './errors.js';
import { processInfo } from './ipc.js';
import { locateSocket, mapsCoreclr } from './socket.js';

export interface DotnetFacts {
  kind: 'dotnet';
  /** CLR product version ("10.0.12"), when the runtime answered. */
  version?: string;
  /** The diagnostics socket; undefined when the process is .NET without one (diagnostics disabled). */
  socket?: string;
  /** Why tripdump cannot talk to the runtime (then dumps fall back to the ptrace writer). */
  unavailable?: string;
}

/** Facts about a .NET process, or undefined when it is not one. Throws ProcessGoneError. */
export async function detectDotnet(pid: number, signal?: AbortSignal): Promise<DotnetFacts | undefined> {
  let loc: ReturnType<typeof locateSocket>;
  try {
    loc = locateSocket(pid);
  } catch (e) {
    if (e instanceof DotnetUnavailableError) {
      // A socket planted for a process that is not .NET does not make it one.
      const dotnet = e.reason !== 'not-dotnet' && (e.reason !== 'untrusted' || mapsCoreclr(pid));
      return dotnet ? { kind: 'dotnet', unavailable: e.message } : undefined;
    }
    throw e;
  }
  try {
    const info = await processInfo(loc.path, pid, { signal, timeoutMs: 2000 });
    return {
      kind: 'dotnet',
      socket: loc.path,
      ...(info.clrProductVersion ? { version: info.clrProductVersion } : {}),
    };
  } catch (e) {
    if (e instanceof ProcessGoneError) throw e;
    return { kind: 'dotnet', socket: loc.path, unavailable: (e as Error).message };
  }
}
