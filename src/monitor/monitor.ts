// The monitor: samples its targets every poll interval, asks each trigger to judge each sample, and runs
// the actions when one fires. The sustain window (--for), the cooldown (-s), the dump count (-n, shared
// by all triggers of a target) and the quit logic live here, once, for every trigger.
import { readFileSync } from 'node:fs';
import { sleep } from '../abort.js';
import type { Action, ActionContext, HistoryEntry, TargetInfo } from '../actions/action.js';
import { processName } from '../dump/naming.js';
import { ProcessGoneError, UsageError } from '../errors.js';
import { FIELD_NAMES, type FieldName, type ProcessRecord } from '../sampler/fields.js';
import { Sampler, type WakeCondition } from '../sampler/sampler.js';
import type { Snapshot } from '../sampler/snapshot.js';
import type { DumpFn, FireOptions, Firing, Judgement, Trigger, TriggerState } from '../triggers/trigger.js';

const DISCOVERY_BITS = (1 << FIELD_NAMES.indexOf('comm')) | (1 << FIELD_NAMES.indexOf('pgid'));
/** Paths the summary lists (the latest ones); `writtenTotal` counts them all. */
const WRITTEN_KEPT = 1000;

/**
 * Which processes a rule is about: one pid, every process with a name (ProcDump's -w) or in a process
 * group (-pgid), or every process a predicate accepts (the agent's filters). A predicate is asked when a
 * process appears or exec()s; a monitor with one runs until its signal aborts.
 */
export type TargetSpec =
  | { pid: number }
  | { name: string }
  | { pgid: number }
  | {
      /**
       * Whether the rule is about this process; undefined when it cannot tell yet (a runtime still
       * loading): it is asked again at each sweep while the process lives.
       */
      match: (process: { pid: number; comm: string; startTime?: number | undefined }) => boolean | undefined;
    };

/** What to watch, what fires, what to do: one rule. */
export interface MonitorRule {
  /** Names the rule in TargetInfo.rule (several rules in one monitor). */
  name?: string;
  target: TargetSpec;
  /** Polled or event-driven triggers; at least one (use TimerTrigger for ProcDump's no-trigger mode). */
  triggers: readonly Trigger[];
  actions: readonly Action[];
  /** Firings per target before it is done (-n). Default 1. */
  count?: number;
  /** Quiet time after each firing (-s), ms. Default 10,000. */
  cooldownMs?: number;
  /** How long a condition must hold before it fires (--for), ms. Default 0: the first sample that meets it. */
  sustainMs?: number;
}

/**
 * One rule (target, triggers, actions…) or several (`rules`): every rule shares the monitor's two
 * samplers — the watched processes', and one `all: true` sweep of the host that finds new matches.
 */
export interface MonitorOptions extends Partial<MonitorRule> {
  rules?: readonly MonitorRule[];
  /** Sampling interval (-pf), ms. Default 1,000. */
  pollMs?: number;
  /** Samples kept per target for actions that use them (Action.usesHistory). Default 60. */
  historySize?: number;
  /**
   * Emit every sample as it is taken. By default the event loop sleeps through polls that have nothing to
   * report (the sampler's thread judges them against the triggers' conditions), and 'sample' events for
   * those polls arrive with the next batch.
   */
  live?: boolean;
  signal?: AbortSignal;
  /** Fields to sample for every target besides what the triggers read (for 'sample' listeners). */
  fields?: readonly FieldName[];
  /**
   * Asked once per firing, before its actions run: a reason to refuse it (a limit), or undefined. A refused
   * firing runs no action, is reported as a 'suppressed' event and starts the cooldown like any firing;
   * it does not count towards the rule's count.
   */
  admit?: (target: TargetInfo, firing: Firing) => string | undefined;
}

export type MonitorEvent =
  | { type: 'target'; target: TargetInfo }
  /**
   * Every trigger of a target watches it (event-driven ones have subscribed: their session, watcher or
   * inspector is up): from here on no event is missed. Right after 'target' when all are polled.
   */
  | { type: 'armed'; target: TargetInfo }
  | { type: 'exit'; target: TargetInfo }
  | { type: 'sample'; target: TargetInfo; record: ProcessRecord }
  | { type: 'fire'; target: TargetInfo; firing: Firing; index: number }
  | { type: 'suppressed'; target: TargetInfo; firing: Firing; reason: string }
  /** A sweep ended: of the targets, or of every process on the host (discovery). */
  | { type: 'sweep'; of: 'targets' | 'host'; durationMs: number; processes: number }
  | { type: 'action'; target: TargetInfo; firing: Firing; kind: string; path?: string; message: string }
  | { type: 'error'; target: TargetInfo; firing: Firing | undefined; kind: string; error: Error };

/** An event-driven trigger that could not watch a target that still runs. */
export interface MonitorFailure {
  target: TargetInfo;
  /** The trigger's tag. */
  kind: string;
  error: Error;
}

export interface MonitorSummary {
  /** Files written by actions, in order: the latest 1,000 (a long run forgets older paths). */
  written: string[];
  /** How many files actions wrote in all. */
  writtenTotal: number;
  firings: number;
  /** Why the monitor stopped: 'failed' when a trigger could not watch a target named to it (`failures`). */
  reason: 'done' | 'exited' | 'aborted' | 'failed';
  failures: MonitorFailure[];
}

interface TriggerSlot {
  trigger: Trigger;
  state: TriggerState;
  /** When the condition started to hold continuously (performance.now()), for --for. */
  since: number | undefined;
}

/** A rule with its defaults applied, and the targets it holds. */
interface Rule {
  source: MonitorRule;
  spec: TargetSpec;
  triggers: readonly Trigger[];
  actions: readonly Action[];
  count: number;
  cooldownMs: number;
  sustainMs: number;
  /** An action reads the samples before a firing: only then are they kept. */
  keepsHistory: boolean;
  /** By pid. */
  targets: Map<number, Target>;
}

interface Target {
  rule: Rule;
  info: TargetInfo;
  /** Ends the target's event-driven triggers. */
  events: AbortController;
  slots: TriggerSlot[];
  history: HistoryEntry[];
  firings: number;
  busy: boolean;
  /** The actions of the firing in flight (while busy). */
  running: Promise<void> | undefined;
  /** Event-driven triggers that have not said they are armed yet. */
  unarmed: number;
  /** Epoch ms, like Snapshot.time. */
  cooldownUntil: number;
  exited: boolean;
}

function positive(v: number | undefined, name: string, dflt: number, min: number): number {
  const x = v ?? dflt;
  if (!Number.isFinite(x) || x < min) throw new UsageError(`${name} must be ≥ ${min}, got ${x}`, name);
  return x;
}

function makeRule(r: MonitorRule, external = false): Rule {
  if (r.triggers.length === 0 && !external)
    throw new UsageError(`a monitor${r.name ? ` rule (${r.name})` : ''} needs at least one trigger`);
  return {
    source: r,
    spec: r.target,
    triggers: r.triggers,
    actions: r.actions,
    count: positive(r.count, 'count', 1, 1),
    cooldownMs: positive(r.cooldownMs, 'cooldownMs', 10_000, 0),
    sustainMs: positive(r.sustainMs, 'sustainMs', 0, 0),
    keepsHistory: r.actions.some((a) => a.usesHistory === true),
    targets: new Map(),
  };
}

export class Monitor {
  readonly #o: {
    pollMs: number;
    historySize: number;
    live: boolean;
    signal: AbortSignal;
    admit: MonitorOptions['admit'];
    fields: readonly FieldName[];
  };
  #rules: Rule[];
  readonly #listeners: ((e: MonitorEvent) => void)[] = [];
  readonly #inflight = new Set<Promise<void>>();
  readonly #written: string[] = [];
  #writtenTotal = 0;
  #firings = 0;
  /** A target was ever added: -w and -pgid wait for a first one, then end when none is left to watch. */
  #seen = false;
  /** A target went away before it was done: the summary says 'exited' rather than 'done'. */
  #cutShort = false;
  /** Event-driven triggers that could not watch a target named to the monitor: it ends. */
  readonly #failures: MonitorFailure[] = [];
  /** The rules changed: the next discovery sweep looks at every process, not only new ones. */
  #rescan = false;
  /** Processes a rule's predicate could not decide yet: looked at again at the next sweep. */
  #undecided = new Map<number, { startTime: number | undefined; rules: Set<Rule> }>();
  /** Ends the sampler's current wait, so the loop looks at the targets again. */
  #nudge: () => void = () => {};

  constructor(options: MonitorOptions) {
    const { rules, pollMs, historySize, live, signal, admit, fields, ...one } = options;
    if (rules && one.target)
      throw new UsageError('give either rules or one rule (target, triggers, actions), not both', 'rules');
    if (!rules && !(one.target && one.triggers && one.actions))
      throw new UsageError('a monitor needs a target, triggers and actions (or rules)', 'target');
    this.#rules = (rules ?? [one as MonitorRule]).map((r) => makeRule(r));
    this.#o = {
      pollMs: positive(pollMs, 'pollMs', 1000, 1),
      historySize: positive(historySize, 'historySize', 60, 1),
      live: live === true,
      signal: signal ?? new AbortController().signal,
      admit,
      fields: fields ?? [],
    };
  }

  /**
   * Targets the monitor holds state for now: the live ones (and exited ones whose actions are still
   * running), one per rule that matched a process. It returns to the live matching processes after any
   * amount of churn.
   */
  get tracked(): number {
    let n = 0;
    for (const r of this.#rules) n += r.targets.size;
    return n;
  }

  /**
   * Replaces the rules while the monitor runs. A rule passed again (the same object) keeps its targets, their
   * histories and trigger states; the targets of rules left out are dropped (their event-driven triggers
   * stop; actions in flight finish); new rules are matched against every process at the next poll. The
   * samplers go on; only a new rule that reads a field not sampled so far makes the monitor open the
   * targets' files again for it.
   */
  setRules(rules: readonly MonitorRule[]): void {
    const next = rules.map((r) => this.#rules.find((x) => x.source === r) ?? makeRule(r));
    for (const r of this.#rules) if (!next.includes(r)) for (const t of r.targets.values()) this.#drop(t);
    this.#rules = next;
    this.#rescan = true;
    this.#nudge();
  }

  /** The fields the targets' sampler must read for these rules. */
  #neededFields(): Set<FieldName> {
    const fields = new Set<FieldName>(['comm', 'pgid', ...this.#o.fields]);
    for (const r of this.#rules) for (const t of r.triggers) for (const f of t.fields) fields.add(f);
    return fields;
  }

  /** The targets the monitor holds now (live processes a rule matched), one per rule. */
  targets(): TargetInfo[] {
    return [...this.#targets()].filter((t) => !t.exited).map((t) => t.info);
  }

  /**
   * Runs actions for an event about a process the monitor does not track (a crash the crash handler
   * reported, of a process no sweep may ever have seen): through the same admit hook, the same events and
   * the same action sequence as a firing of a rule.
   */
  dispatch(info: TargetInfo, firing: Firing, actions: readonly Action[]): Promise<void> {
    const rule = makeRule(
      { target: { pid: info.pid }, triggers: [], actions, count: Number.MAX_SAFE_INTEGER, cooldownMs: 0 },
      true,
    );
    return this.#fire(this.#newTarget(rule, info), undefined, firing);
  }

  on(listener: (e: MonitorEvent) => void): this {
    this.#listeners.push(listener);
    return this;
  }

  #emit(e: MonitorEvent): void {
    for (const l of this.#listeners) l(e);
  }

  *#targets(): Generator<Target> {
    for (const r of this.#rules) yield* r.targets.values();
  }

  /**
   * Runs until every target is done (count reached or triggers spent), has exited, or the signal aborts;
   * with a `match` rule, until the signal aborts.
   */
  async run(): Promise<MonitorSummary> {
    const { signal } = this.#o;
    let fields = this.#neededFields();
    const discovering = this.#rules.some((r) => !('pid' in r.spec));
    // One poll's sweeps come back in a batch: enough blocks to refill the whole history from one. With a
    // discovery sweep (or a live listener) the loop wakes at every poll, so a batch is one sweep.
    const open = () =>
      new Sampler({ fields: [...fields], keep: discovering || this.#o.live ? 3 : this.#o.historySize + 1 });
    let sampler = open();
    this.#nudge = () => sampler.wake();
    const onAbort = () => this.#nudge();
    signal.addEventListener('abort', onAbort, { once: true });
    // Targets by name, process group or predicate are found by a stat-only sweep of every process. The
    // start time tells a reused pid from the process first seen under it.
    let discovery: Sampler | undefined;
    try {
      for (const r of this.#rules) {
        if ('pid' in r.spec) this.#add(sampler, r, r.spec.pid);
        else if ('pgid' in r.spec) this.#checkGroup(r.spec.pgid);
      }
      while (!signal.aborted && this.#failures.length === 0 && !this.#finished()) {
        const needed = this.#neededFields();
        if ([...needed].some((f) => !fields.has(f))) {
          // New rules read more: a sampler with the new fields takes over the live targets.
          fields = needed;
          const old = sampler;
          sampler = open();
          const live = [...new Set([...this.#targets()].filter((t) => !t.exited).map((t) => t.info.pid))];
          await sampler.watchAsync(live);
          old.close();
        }
        if (!discovery && this.#rules.some((r) => !('pid' in r.spec)))
          discovery = new Sampler({ all: true, fields: ['comm', 'pgid', 'startTime'] });
        if (discovery) {
          // A process can join later without being new: exec changes its name, setpgid its group. The
          // change bits say which rows to look at (every bit is set on a new row); after a rule change,
          // every row.
          const d = await discovery.sampleAsync();
          this.#emit({ type: 'sweep', of: 'host', durationMs: d.durationMs, processes: d.length });
          const changed = d.changed;
          const all = this.#rescan;
          this.#rescan = false;
          const undecided = [...this.#undecided];
          this.#undecided.clear();
          for (const [pid, u] of undecided) {
            const row = d.rowOf(pid);
            const r = row < 0 ? undefined : d.record(row);
            if (r && r.startTime === u.startTime)
              for (const rule of u.rules) if (this.#rules.includes(rule)) this.#consider(sampler, rule, r);
          }
          for (let row = 0; row < d.length; row++) {
            if (!all && !(changed[row]! & DISCOVERY_BITS)) continue;
            const r = d.record(row);
            for (const rule of this.#rules) {
              if ('pid' in rule.spec) continue;
              const known = rule.targets.get(r.pid);
              if (known && known.info.startTime === r.startTime) continue;
              this.#consider(sampler, rule, r);
            }
          }
        }
        // Discovery runs between polls and a live listener wants each one: a single sweep per call then.
        // Otherwise the sampler's thread polls until a trigger's condition holds (or a target starts or
        // exits, a cooldown ends, a dump ends), and this loop sleeps in between.
        const plan = this.#plan();
        const batch = await sampler.sampleUntil({
          intervalMs: this.#o.pollMs,
          waitMs: discovery || this.#o.live ? 0 : plan.waitMs,
          conditions: plan.conditions,
        });
        for (const snap of batch) this.#take(snap);
      }
      for (const t of this.#targets()) t.events.abort();
      await Promise.allSettled(this.#inflight);
    } finally {
      signal.removeEventListener('abort', onAbort);
      sampler.close();
      discovery?.close();
    }
    const reason = signal.aborted
      ? 'aborted'
      : this.#failures.length
        ? 'failed'
        : !this.#cutShort && [...this.#targets()].every((t) => this.#done(t))
          ? 'done'
          : 'exited';
    return {
      written: this.#written,
      writtenTotal: this.#writtenTotal,
      firings: this.#firings,
      reason,
      failures: [...this.#failures],
    };
  }

  /** What should end the sampler's next wait: the conditions of every target that may fire now. */
  #plan(): { conditions: WakeCondition[]; waitMs: number } {
    const conditions: WakeCondition[] = [];
    let waitMs = Number.POSITIVE_INFINITY;
    const now = Date.now();
    for (const t of this.#targets()) {
      // A dump in flight nudges the loop when it ends.
      if (t.exited || t.busy || this.#done(t)) continue;
      if (now < t.cooldownUntil) {
        waitMs = Math.min(waitMs, t.cooldownUntil - now);
        continue;
      }
      for (const slot of t.slots) {
        if (!slot.trigger.judge || slot.trigger.limit(slot.state) <= 0) continue;
        // A trigger that cannot say when it would fire is asked at every poll.
        const c = slot.trigger.condition?.(slot.state) ?? { field: 'always', above: true, value: 0 };
        conditions.push({ pid: t.info.pid, ...c });
      }
    }
    return { conditions, waitMs };
  }

  /** One sweep's worth of monitoring: exits, history, 'sample' events, judgements. */
  #take(snap: Snapshot): void {
    this.#emit({ type: 'sweep', of: 'targets', durationMs: snap.durationMs, processes: snap.length });
    for (const e of snap.exited)
      for (const r of this.#rules) {
        const t = r.targets.get(e.pid);
        if (t && t.info.startTime === e.startTime) this.#exited(t);
      }
    for (const t of this.#targets()) {
      const record = t.exited ? undefined : snap.get(t.info.pid);
      if (!record) continue;
      if (t.rule.keepsHistory) {
        t.history.push({ time: snap.time, record });
        if (t.history.length > this.#o.historySize) t.history.shift();
      }
      this.#emit({ type: 'sample', target: t.info, record });
      if (t.busy || snap.time < t.cooldownUntil || this.#done(t)) continue;
      this.#judge(t, record, snap.time);
    }
  }

  /** `now`: the sample's time (epoch ms). */
  #judge(t: Target, record: ProcessRecord, now: number): void {
    for (const slot of t.slots) {
      if (!slot.trigger.judge || slot.trigger.limit(slot.state) <= 0) continue;
      const j = slot.trigger.judge(record, slot.state);
      if (!j?.met) {
        slot.since = undefined;
        continue;
      }
      slot.since ??= now;
      if (now - slot.since < t.rule.sustainMs) continue;
      void this.#fire(t, slot, { ...j, tag: slot.trigger.tag, reason: slot.trigger.describe(j) });
      return;
    }
  }

  /** Whether a target may fire now: not busy, not cooling down, not done. */
  #ready(t: Target): boolean {
    return !t.busy && !t.exited && Date.now() >= t.cooldownUntil && !this.#done(t) && !this.#o.signal.aborted;
  }

  /**
   * Runs the actions of one firing (unless `admit` refuses it); the sustain timers restart and the
   * cooldown starts when they end.
   */
  #fire(t: Target, slot: TriggerSlot | undefined, firing: Firing): Promise<void> {
    for (const s of t.slots) s.since = undefined;
    const refused = this.#o.admit?.(t.info, firing);
    if (refused !== undefined) {
      t.cooldownUntil = Date.now() + t.rule.cooldownMs;
      this.#emit({ type: 'suppressed', target: t.info, firing, reason: refused });
      return Promise.resolve();
    }
    t.busy = true;
    t.firings++;
    this.#firings++;
    if (slot) slot.state.fired++;
    this.#emit({ type: 'fire', target: t.info, firing, index: t.firings });
    const run = this.#runActions(t, firing).finally(() => {
      t.busy = false;
      t.running = undefined;
      t.cooldownUntil = Date.now() + t.rule.cooldownMs;
      this.#inflight.delete(run);
      if (this.#done(t)) t.events.abort();
      if (t.exited) this.#forget(t);
      this.#nudge();
    });
    t.running = run;
    this.#inflight.add(run);
    return run;
  }

  /**
   * Waits one step towards the target's turn to fire (its dump in flight ends, its cooldown passes).
   * Resolves false when the turn will never come (the target is done, gone or dropped, or Ctrl-C).
   */
  async #turn(t: Target): Promise<boolean> {
    const signal = t.events.signal;
    if (signal.aborted || t.exited || this.#done(t) || this.#o.signal.aborted) return false;
    if (t.running) await t.running.catch(() => {});
    else await sleep(t.cooldownUntil - Date.now(), signal);
    return true;
  }

  /** Starts the event-driven triggers of a new target; 'armed' once all of them watch it. */
  #subscribe(t: Target): void {
    t.unarmed = t.slots.filter((s) => s.trigger.subscribe).length;
    if (t.unarmed === 0) this.#emit({ type: 'armed', target: t.info });
    for (const slot of t.slots) {
      const { trigger } = slot;
      if (!trigger.subscribe) continue;
      let armed = false;
      const arm = () => {
        if (armed || t.events.signal.aborted) return;
        armed = true;
        if (--t.unarmed === 0) this.#emit({ type: 'armed', target: t.info });
      };
      const fire = async (
        j: Judgement,
        reason: string,
        dump?: DumpFn,
        options?: FireOptions,
      ): Promise<boolean> => {
        if (trigger.sustain) {
          if (!j.met) {
            slot.since = undefined;
            return false;
          }
          slot.since ??= Date.now();
          if (Date.now() - slot.since < t.rule.sustainMs) return false;
        }
        // Every event of a series counts: it waits while a dump is written and the cooldown runs. Nothing
        // may come between the last wait and #fire, or another trigger's event could take the turn.
        if (options?.queue && j.met) while (!this.#ready(t) && (await this.#turn(t))) {}
        if (!this.#ready(t) || trigger.limit(slot.state) <= 0) return false;
        await this.#fire(t, slot, { ...j, tag: trigger.tag, reason, ...(dump ? { dump } : {}) });
        return true;
      };
      const watching = trigger.subscribe(t.info.pid, fire, t.events.signal, arm).catch((e: unknown) => {
        // The process went away while its trigger was starting (or watching): that is its exit, not a
        // failure of the monitor. A ProcessGoneError about a process that still runs (a file of it that
        // was missing) is a failure like any other.
        if (t.exited || (e instanceof ProcessGoneError && !running(t.info.pid))) {
          this.#exited(t);
          return;
        }
        this.#emit({
          type: 'error',
          target: t.info,
          firing: undefined,
          kind: trigger.tag,
          error: e as Error,
        });
        // A process a predicate found (the agent's rules over a host) is let go: one process whose
        // runtime cannot be reached must not end the watch over all the others. A process named on the
        // command line cannot be watched as asked: the monitor fails.
        if ('match' in t.rule.spec) this.#drop(t);
        else {
          this.#failures.push({ target: t.info, kind: trigger.tag, error: e as Error });
          this.#nudge();
        }
      });
      this.#inflight.add(watching);
      void watching.finally(() => this.#inflight.delete(watching));
    }
  }

  async #runActions(t: Target, firing: Firing): Promise<void> {
    const ctx: ActionContext = {
      target: t.info,
      firing,
      time: new Date(),
      history: [...t.history],
      signal: this.#o.signal,
      written: new Map(),
    };
    for (const action of t.rule.actions) {
      try {
        const r = await action.run(ctx);
        if (r.path) {
          this.#writtenTotal++;
          this.#written.push(r.path);
          if (this.#written.length > WRITTEN_KEPT) this.#written.shift();
        }
        this.#emit({
          type: 'action',
          target: t.info,
          firing,
          kind: action.kind,
          message: r.message,
          ...(r.path ? { path: r.path } : {}),
        });
      } catch (e) {
        this.#emit({ type: 'error', target: t.info, firing, kind: action.kind, error: e as Error });
        // A later action must not run on a missing input (no exec on a dump that failed).
        return;
      }
    }
  }

  /** A target is done when it has its count, or every trigger is spent. */
  #done(t: Target): boolean {
    return t.firings >= t.rule.count || t.slots.every((s) => s.trigger.limit(s.state) <= 0);
  }

  /**
   * The monitor ends when every target seen is done or gone and none has work in flight; never while a
   * rule matches by predicate (processes that match may start at any time).
   */
  #finished(): boolean {
    if (!this.#seen || this.#rules.some((r) => 'match' in r.spec)) return false; // -w and -pgid wait for a first match
    for (const t of this.#targets()) if (t.busy || !(t.exited || this.#done(t))) return false;
    return true;
  }

  /** The target's process is gone: its triggers stop, and its state goes once no action needs it. */
  #exited(t: Target): void {
    if (t.exited) return;
    t.exited = true;
    t.events.abort();
    this.#emit({ type: 'exit', target: t.info });
    if (!t.busy) this.#forget(t);
  }

  #forget(t: Target): void {
    // A newer process may hold the pid already.
    if (t.rule.targets.get(t.info.pid) === t) t.rule.targets.delete(t.info.pid);
    if (!this.#done(t)) this.#cutShort = true;
  }

  /**
   * The rule of a target went away (setRules), or its trigger cannot watch it: as if its process had,
   * without cutting the run short.
   */
  #drop(t: Target): void {
    t.events.abort();
    if (t.rule.targets.get(t.info.pid) === t) t.rule.targets.delete(t.info.pid);
  }

  /** A process a discovery sweep found: added to the rule if it matches, asked again if undecided. */
  #consider(
    sampler: Sampler,
    rule: Rule,
    r: { pid: number; comm?: string | null; pgid?: number | null; startTime?: number | null },
  ): void {
    const m = this.#matches(rule, r.pid, r.comm, r.pgid, r.startTime ?? undefined);
    if (m) this.#tryAdd(sampler, rule, r.pid, r.startTime ?? undefined);
    else if (m === undefined) {
      const u = this.#undecided.get(r.pid) ?? { startTime: r.startTime ?? undefined, rules: new Set() };
      u.rules.add(rule);
      this.#undecided.set(r.pid, u);
    }
  }

  #matches(
    rule: Rule,
    pid: number,
    comm: string | null | undefined,
    pgid: number | null | undefined,
    startTime?: number,
  ): boolean | undefined {
    const spec = rule.spec;
    if ('pgid' in spec) return pgid === spec.pgid;
    if (typeof comm !== 'string') return false;
    if ('match' in spec) return spec.match({ pid, comm, startTime });
    if (!('name' in spec)) return false;
    // comm is cut at 15 bytes; the name ProcDump matches is argv[0]'s basename.
    if (!spec.name.startsWith(comm) && comm !== spec.name) return false;
    return processName(pid) === spec.name.replace(/[^A-Za-z0-9]/g, '_') || comm === spec.name;
  }

  #checkGroup(pgid: number): void {
    try {
      const stat = readFileSync(`/proc/${pgid}/stat`, 'latin1');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) === pgid) return;
    } catch {
      // no leader: look for any member below
    }
    // The leader may have exited while members remain: the discovery sweep will find them; but a group
    // with no member at all is a mistake worth saying at once.
    const members = new Sampler({ all: true, fields: ['pgid'] });
    try {
      for (const r of members.sample().records()) if (r.pgid === pgid) return;
    } finally {
      members.close();
    }
    throw new UsageError(`no process is in process group ${pgid}`, '-pgid');
  }

  /** Adds a discovered process; one that is gone by now (or whose pid is another's already) is skipped. */
  #tryAdd(sampler: Sampler, rule: Rule, pid: number, startTime: number | undefined): void {
    try {
      this.#add(sampler, rule, pid, startTime);
    } catch (e) {
      if (!(e instanceof ProcessGoneError)) throw e;
    }
  }

  /** The live target another rule holds for this pid, if any: the process is watched already. */
  #watchedBy(pid: number, except: Rule): Target | undefined {
    for (const r of this.#rules) {
      if (r === except) continue;
      const t = r.targets.get(pid);
      if (t && !t.exited) return t;
    }
    return undefined;
  }

  /** `startTime`: the process the caller matched, when it knows (discovery); watch() then confirms it. */
  #add(sampler: Sampler, rule: Rule, pid: number, startTime?: number): void {
    const known = rule.targets.get(pid);
    if (known && !known.exited && known.info.startTime === startTime) return;
    const other = this.#watchedBy(pid, rule);
    const id =
      other && (startTime === undefined || other.info.startTime === startTime)
        ? { pid, startTime: other.info.startTime }
        : sampler.watch(pid);
    // Whoever holds the pid now, a target with another start time has exited, whether or not a sweep
    // said so yet (the sampler drops its row when it takes in the new watch).
    if (known && known.info.startTime !== id.startTime) this.#exited(known);
    else if (known) return; // the same process: a target already
    if (startTime !== undefined && id.startTime !== startTime) {
      // The process matched is gone and its pid is another's, unmatched: not ours to sample.
      if (!this.#watchedBy(pid, rule)) sampler.unwatch(pid);
      return;
    }
    const target = this.#newTarget(rule, {
      pid,
      startTime: id.startTime,
      name: other?.info.name ?? processName(pid),
      ...(rule.source.name !== undefined ? { rule: rule.source.name } : {}),
    });
    rule.targets.set(pid, target);
    this.#seen = true;
    this.#emit({ type: 'target', target: target.info });
    this.#subscribe(target);
  }

  #newTarget(rule: Rule, info: TargetInfo): Target {
    return {
      rule,
      info,
      events: new AbortController(),
      slots: rule.triggers.map((trigger) => ({ trigger, state: { fired: 0 }, since: undefined })),
      history: [],
      firings: 0,
      busy: false,
      running: undefined,
      unarmed: 0,
      cooldownUntil: 0,
      exited: false,
    };
  }
}

/** Whether a process with this pid runs (not a zombie): a trigger's "gone" is checked against it. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}
