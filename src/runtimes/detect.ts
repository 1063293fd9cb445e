// Which runtime a process runs (design §7): cheap, lazy checks, one branch per runtime, so `sample`, `-w`
// and the crash watcher can pick the right dump writer. Each runtime's own module knows its signs.
import { type DotnetFacts, detectDotnet } from './dotnet/detect.js';
import { detectNode, type NodeFacts } from './node/detect.js';

export type RuntimeFacts = DotnetFacts | NodeFacts | { kind: 'native' };

/** The runtime of `pid` and what is known about it; 'native' when no runtime was recognised. */
export async function detectRuntime(pid: number, signal?: AbortSignal): Promise<RuntimeFacts> {
  return (await detectDotnet(pid, signal)) ?? detectNode(pid) ?? { kind: 'native' };
}
