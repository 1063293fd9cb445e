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
  /**
   * The samples leading up to the firing, oldest first (the monitor keeps the last 60 by default); empty
   * unless an action of the rule uses it (Action.usesHistory).
   */
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
  /**
   * The action reads `ctx.history`. The monitor keeps each target's last samples only for rules that have
   * such an action: on a host with thousands of targets they would be most of its memory.
   */
  readonly usesHistory?: boolean;
  run(ctx: ActionContext): Promise<ActionResult>;
}
