// The monitor's Node.js switches, as rows of procdump.ts's switch table: --heap-used and --loop-delay
// (triggers), and --node-dump (what a firing writes on a Node target).
import { UsageError } from '../errors.js';
import { NODE_OUTPUTS, type NodeOutput } from '../runtimes/node/actions.js';
import { executable, isNodeProcess } from '../runtimes/node/detect.js';
import { HeapUsedTrigger, LoopDelayTrigger } from '../runtimes/node/triggers.js';
import type { Trigger } from '../triggers/trigger.js';
import { parseNumber, RANGE } from './common.js';
import type { Building, Switch } from './procdump.js';

export const NODE_USAGE_LINES = `Node.js triggers (through the inspector: opened with SIGUSR1 and closed again after):
  --heap-used MB[,MB..]  V8 heap used at or above each threshold in turn (asked at every poll)
  --loop-delay MS        the event loop has not gone round for MS ms: fires while it is still blocked
  --node-dump LIST       what each firing writes on a Node target: core, heap, stack, report,
                profile[:SECONDS] (comma-separated). Default: a heap snapshot for --heap-used, the
                blocked loop's stack for --loop-delay, a core for every other trigger
`;

/** What the Node switches add to the configuration. */
export interface NodeConfig {
  /** undefined: by trigger (see NODE_USAGE_LINES). */
  outputs: NodeOutput[] | undefined;
  profileSeconds: number;
}

/** The Node switches' part of procdump.ts's Building. */
export interface NodeBuilding {
  loopDelayMs?: number;
  outputs?: NodeOutput[];
  profileSeconds?: number;
  /** Some Node switch was given. */
  used: boolean;
}

const MAX_MB = 16_777_216;

function node(b: Building): NodeBuilding {
  b.node ??= { used: false };
  b.node.used = true;
  return b.node;
}

export const NODE_SWITCHES: Record<string, Switch> = {
  'heap-used': {
    values: 1,
    apply(b, [v], s) {
      const parts = v!.split(',');
      if (parts.some((p) => p.trim() === '')) throw new UsageError(`${s} needs MB[,MB...], got '${v}'`, s);
      const t = new HeapUsedTrigger(parts.map((p) => parseNumber(s, p, 0, MAX_MB)));
      b.triggers.push(t);
      node(b);
      // One dump per threshold, as -m.
      b.defaultCount = Math.max(b.defaultCount ?? 1, t.thresholds.length);
    },
  },
  'loop-delay': {
    values: 1,
    apply(b, [v], s) {
      // The trigger is made once -pf and --for are known (finishNodeSwitches).
      node(b).loopDelayMs = parseNumber(s, v!, 1, RANGE.intervalMs[1]);
    },
  },
  'node-dump': {
    values: 1,
    apply(b, [v], s) {
      const n = node(b);
      n.outputs = [];
      for (const item of v!.split(',').map((x) => x.trim())) {
        const [kind, seconds] = item.split(':') as [string, string | undefined];
        if (!(NODE_OUTPUTS as readonly string[]).includes(kind))
          throw new UsageError(
            `${s}: '${item}' is not one of ${NODE_OUTPUTS.join(', ')} (comma-separated)`,
            s,
          );
        if (seconds !== undefined) {
          if (kind !== 'profile') throw new UsageError(`${s}: only profile takes :SECONDS, got '${item}'`, s);
          n.profileSeconds = parseNumber(`${s} profile:SECONDS`, seconds, 0.1, RANGE.seconds[1]);
        }
        if (n.outputs.includes(kind as NodeOutput)) throw new UsageError(`${s}: '${kind}' is given twice`, s);
        n.outputs.push(kind as NodeOutput);
      }
    },
  },
};

/** After every switch: the loop-delay trigger, which probes at -pf and adds --for to its threshold. */
export function finishNodeSwitches(b: Building): NodeConfig | undefined {
  if (!b.node?.used) return undefined;
  if (b.node.loopDelayMs !== undefined)
    b.triggers.push(
      new LoopDelayTrigger(b.node.loopDelayMs, { intervalMs: b.pollMs ?? 1000, sustainMs: b.sustainMs ?? 0 }),
    );
  return { outputs: b.node.outputs, profileSeconds: b.node.profileSeconds ?? 5 };
}

export function isNodeTrigger(t: Trigger): boolean {
  return t instanceof HeapUsedTrigger || t instanceof LoopDelayTrigger;
}

/** A PID given with Node switches must be a Node process: said before anything starts. */
export function checkNodeTarget(pid: number, b: Building): void {
  if (!b.node?.used || isNodeProcess(pid)) return;
  throw new UsageError(
    `process ${pid} is not a Node.js process (${executable(pid) ?? 'executable unreadable'}): the Node switches need one`,
    'PID',
  );
}
