// The monitor's Node.js switches (registered in procdump.ts): --heap-used and --loop-delay triggers, and
// --node-dump, what a firing writes on a Node target.
import { UsageError } from '../errors.js';
import type { TargetSpec } from '../monitor/monitor.js';
import { NODE_OUTPUTS, type NodeOutput } from '../runtimes/node/actions.js';
import { executable, isNodeProcess } from '../runtimes/node/detect.js';
import { HeapUsedTrigger, LoopDelayTrigger } from '../runtimes/node/triggers.js';
import type { Trigger } from '../triggers/trigger.js';

export const NODE_SWITCHES = { 'heap-used': 'value', 'loop-delay': 'value', 'node-dump': 'value' } as const;

export const NODE_SWITCH_HELP = `Node.js targets (through the inspector, opened with SIGUSR1 and closed again after):
  --heap-used MB[,MB..]  V8 heap used at or above each threshold in turn (asked at every poll)
  --loop-delay MS        the event loop has not gone round for MS ms: fires while it is still blocked
  --node-dump LIST       what each firing writes on a Node target: core, heap, stack, report,
                         profile[:SECONDS] (comma-separated). Default: a heap snapshot for --heap-used,
                         the blocked loop's stack for --loop-delay, a core for every other trigger
`;

export interface NodeConfig {
  /** undefined: by trigger (see NODE_SWITCH_HELP). */
  outputs: NodeOutput[] | undefined;
  profileSeconds: number;
}

function positive(option: string, value: string, min: number): number {
  if (!/^\d+(\.\d+)?$/.test(value) || Number(value) < min)
    throw new UsageError(`${option} needs a number ≥ ${min}, got '${value}'`, option);
  return Number(value);
}

/** The probe's timing from -pf and --for (procdump.ts checks those values and reports bad ones). */
function timing(seen: ReadonlyMap<string, string>): { intervalMs: number; sustainMs: number } {
  const pf = Number(seen.get('pf') ?? 1000);
  const sustain = Number(seen.get('for') ?? 0) * 1000;
  return {
    intervalMs: Number.isFinite(pf) && pf >= 1 ? pf : 1000,
    sustainMs: Number.isFinite(sustain) && sustain >= 0 ? sustain : 0,
  };
}

/** The Node triggers and outputs the switches ask for; undefined config when none was given. */
export function parseNodeSwitches(seen: ReadonlyMap<string, string>): {
  triggers: Trigger[];
  node: NodeConfig | undefined;
} {
  const triggers: Trigger[] = [];
  const heap = seen.get('heap-used');
  if (heap !== undefined) {
    const parts = heap.split(',').map((p) => p.trim());
    if (parts.some((p) => p === ''))
      throw new UsageError(`--heap-used needs MB[,MB...], got '${heap}'`, '--heap-used');
    triggers.push(new HeapUsedTrigger(parts.map((p) => positive('--heap-used', p, 0))));
  }
  const delay = seen.get('loop-delay');
  if (delay !== undefined)
    triggers.push(new LoopDelayTrigger(positive('--loop-delay', delay, 1), timing(seen)));
  const dump = seen.get('node-dump');
  if (triggers.length === 0 && dump === undefined) return { triggers, node: undefined };
  let outputs: NodeOutput[] | undefined;
  let profileSeconds = 5;
  if (dump !== undefined) {
    outputs = [];
    for (const item of dump.split(',').map((x) => x.trim())) {
      const [kind, seconds] = item.split(':') as [string, string | undefined];
      if (!(NODE_OUTPUTS as readonly string[]).includes(kind))
        throw new UsageError(
          `--node-dump: '${item}' is not one of ${NODE_OUTPUTS.join(', ')} (comma-separated)`,
          '--node-dump',
        );
      if (seconds !== undefined) {
        if (kind !== 'profile')
          throw new UsageError(`--node-dump: only profile takes :SECONDS, got '${item}'`, '--node-dump');
        profileSeconds = positive('--node-dump profile:SECONDS', seconds, 0.1);
      }
      if (outputs.includes(kind as NodeOutput))
        throw new UsageError(`--node-dump: '${kind}' is given twice`, '--node-dump');
      outputs.push(kind as NodeOutput);
    }
  }
  return { triggers, node: { outputs, profileSeconds } };
}

/** A PID given with Node switches must be a Node process: said before anything starts. */
export function checkNodeTarget(target: TargetSpec, node: NodeConfig | undefined): void {
  if (!node || !('pid' in target)) return;
  if (!isNodeProcess(target.pid))
    throw new UsageError(
      `process ${target.pid} is not a Node.js process (${executable(target.pid) ?? 'executable unreadable'}): the Node switches need one`,
      'PID',
    );
}

/** Settings block rows of the Node switches. */
export function nodeSettings(
  triggers: readonly Trigger[],
  node: NodeConfig | undefined,
  row: (label: string, value: string) => string,
): string {
  if (!node) return '';
  let s = '';
  for (const t of triggers)
    if (t.tag === 'heapused' || t.tag === 'loopdelay') s += row(t.setting[0], t.setting[1]);
  s += row('Node Dump:', node.outputs ? node.outputs.join(',') : 'by trigger');
  return s;
}
