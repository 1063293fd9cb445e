// What a monitor does when a trigger fires. Actions of one firing run in order; each sees the paths the
// earlier ones wrote (the exec action can name the dump).
import type { ProcessRecord } from '../sampler/fields.js';
import type { Firing } from '../triggers/trigger.js';

export interface TargetInfo {
  pid: number;
  /** Start time, epoch ms: with pid, the process's identity. */
  startTime: number;
  /** ProcDump's name for it: argv[0]'s basename, non-alphanumerics as `_`. */
  name: string;
  /** The monitor rule that matched it, when the rule has a name (the agent's rules). */
  rule?: string;
}

export interface HistoryEntry {
  time: number;
  record: ProcessRecord;
}

export interface ActionContext {
  target: TargetInfo;
  firing: Firing;
  time: Date;
  /** The samples leading up to the firing, oldest first (the monitor keeps the last 60 by default). */
  history: readonly HistoryEntry[];
  /** Aborted on Ctrl-C/SIGTERM: an action in flight stops and leaves nothing half-written. */
  signal: AbortSignal;
  /** Files written by earlier actions of this firing, by action kind ('dump' → the core file). */
  written: Map<string, string>;
}

export interface ActionResult {
  /** File written, if any. */
  path?: string;
  /** A line for the log. */
  message: string;
}

export interface Action {
  readonly kind: string;
  run(ctx: ActionContext): Promise<ActionResult>;
}
