// Which runtime a process runs, so callers pick the right connection and dump writer (design §7). Each
// runtime contributes one cheap, lazy check; the first that says yes wins.
import { isNodeProcess } from './node/detect.js';

export type RuntimeKind = 'node' | 'native';

const DETECTORS: readonly (readonly [RuntimeKind, (pid: number) => boolean])[] = [['node', isNodeProcess]];

/** The runtime of process pid ('native' when none is recognised). Throws ProcessGoneError. */
export function detectRuntime(pid: number): RuntimeKind {
  for (const [kind, test] of DETECTORS) if (test(pid)) return kind;
  return 'native';
}
