// Which runtime a process runs (docs/design.md §13): cheap, lazy checks, one branch per runtime, so `sample`, `-w`
// and the crash watcher can pick the right dump writer. Each runtime's own module knows its signs.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type DotnetFacts, detectDotnet } from './dotnet/detect.js';
import { locateSocket } from './dotnet/socket.js';
import { detectNode, executable, handlesSigusr1, type NodeFacts, nodeSigns } from './node/detect.js';

export type RuntimeFacts = DotnetFacts | NodeFacts | { kind: 'native' };

/** The runtime of `pid` and what is known about it; 'native' when no runtime was recognised. */
export async function detectRuntime(pid: number, signal?: AbortSignal): Promise<RuntimeFacts> {
  return (await detectDotnet(pid, signal)) ?? detectNode(pid) ?? { kind: 'native' };
}

/**
 * The runtime a process has loaded, from its executable and its maps alone (no connection, synchronous):
 * for filters that look at every new process of a host. undefined when neither, or when it is gone. A
 * .NET app started through its apphost shows libhostfxr first, CoreCLR a little later.
 */
export function mapsRuntime(pid: number): 'node' | 'dotnet' | undefined {
  try {
    const exe = executable(pid);
    if (path.basename(exe ?? '') === 'dotnet') return 'dotnet';
    // One read of the maps for both runtimes' signs: this runs for every new process of a host.
    let text: string | undefined;
    const maps = () => (text ??= readFileSync(`/proc/${pid}/maps`, 'latin1'));
    if (nodeSigns(exe, maps)) return 'node';
    return /\/lib(coreclr|hostfxr)\.so$/m.test(maps()) ? 'dotnet' : undefined;
  } catch {
    return undefined; // gone, or not ours to read
  }
}

/**
 * Whether tripdump can reach the runtime of a process mapsRuntime() recognised: a Node process handles
 * SIGUSR1 (what opens its inspector), a .NET one has its diagnostics socket. A process just started has
 * neither yet; one started with --disable-sigusr1 or DOTNET_EnableDiagnostics=0 never will.
 */
export function runtimeReachable(pid: number, runtime: 'node' | 'dotnet'): boolean {
  try {
    if (runtime === 'node') return handlesSigusr1(pid);
    locateSocket(pid);
    return true;
  } catch {
    return false; // gone, or no socket (yet)
  }
}
