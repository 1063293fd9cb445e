// The agent: a rules file turned into one Monitor (one host-wide discovery sweep, one sampler of the
// processes the rules match), limits checked where firings are dispatched, Prometheus metrics and a status
// document, reloads that keep the running rules when the new file is bad. Crash rules listen to the crash
// handler's notifications (the core itself is the handler's) and go through the same limits and actions.
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Action, TargetInfo } from '../actions/action.js';
import { DumpAction } from '../actions/dump.js';
import { ExecAction } from '../actions/exec.js';
import { HistoryAction } from '../actions/history.js';
import type { CrashInfo } from '../crash/protocol.js';
import { DEFAULT_SOCKET } from '../crash/protocol.js';
import { CrashTrigger } from '../crash/trigger.js';
import { sanitize, timestamp } from '../dump/naming.js';
import { AbortError } from '../errors.js';
import { Monitor, type MonitorEvent, type MonitorRule } from '../monitor/monitor.js';
import {
  CounterTrigger,
  ExceptionTrigger,
  GcMemoryTrigger,
  parseCounterSpec,
  parseGcm,
} from '../runtimes/dotnet/triggers.js';
import { NodeOutputAction } from '../runtimes/node/actions.js';
import { HeapUsedTrigger, LoopDelayTrigger } from '../runtimes/node/triggers.js';
import type { FieldName, ProcessRecord } from '../sampler/fields.js';
import { ThresholdTrigger } from '../triggers/threshold.js';
import type { Firing, Trigger, TriggerTag } from '../triggers/trigger.js';
import { type AgentConfig, ConfigError, loadConfig, type Rule } from './config.js';
import { folderProblem } from './folders.js';
import { Limiter } from './limits.js';
import { compileFilter, ProcessFacts } from './match.js';
import { AgentMetrics } from './metrics.js';
import { retrying } from './retry.js';

/** Fields sampled for every watched process whatever the rules read: the per-process metrics. */
const METRIC_FIELDS: readonly FieldName[] = [
  'comm',
  'startTime',
  'cpuPercent',
  'userTicks',
  'systemTicks',
  'rssBytes',
  'vmBytes',
  'threads',
];
/** Firings the status document lists. */
const RECENT = 100;

export interface AgentOptions {
  configPath: string;
  /** Overrides the file's `metrics` address. */
  metrics?: { host: string; port: number };
  /** Stops the agent: dumps in flight are cancelled (target resumed, partial file removed). */
  signal: AbortSignal;
  /** A line for the log (stdout under systemd: the journal). */
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

export interface Firings {
  time: string;
  rule: string;
  pid: number;
  name: string;
  trigger: string;
  reason: string;
  files: string[];
  /** Why a limit held it back. */
  suppressed?: string;
  errors: string[];
}

/**
 * What keeps a rule from doing its job now: a folder its actions write to that cannot be used, or a
 * trigger that failed on a process it watches (retried, `retryAt`).
 */
export interface RuleProblem {
  kind: 'folder' | TriggerTag;
  message: string;
  pid?: number;
  name?: string;
  /** When the trigger first failed (since its last recovery). */
  since?: string;
  attempts?: number;
  retryAt?: string;
}

export interface AgentStatus {
  config: { file: string; loadedAt: string; lastReload?: { time: string; ok: boolean; error?: string } };
  rules: {
    name: string;
    matched: { pid: number; name: string }[];
    firings: number;
    suppressed: number;
    /** Failed actions and triggers, refused firings (an unusable folder) since the rule was loaded. */
    errors: number;
    problems: RuleProblem[];
  }[];
  limits: { bytesInWindow: number; bytesLimit?: number; windowMs: number };
  processes: { watched: number; host: number };
  recent: Firings[];
}

interface LiveRule {
  config: Rule;
  /** Its JSON: a reload keeps a rule whose definition did not change (targets, histories, counts). */
  key: string;
  monitor: MonitorRule | undefined;
  crash: boolean;
  /** The compiled filter. */
  test: (f: ProcessFacts) => boolean | undefined;
  dumpDirs: string[];
  /** Every folder its actions write to (dumps, Node outputs, histories). */
  folders: string[];
  actions: readonly Action[];
  firings: number;
  suppressed: number;
  errors: number;
  /** Triggers failing on a watched process, by pid (retried). */
  failing: Map<number, { kind: TriggerTag; message: string; since: Date; attempts: number; retryAt: Date }>;
}

export class Agent {
  readonly #o: AgentOptions;
  #config: AgentConfig;
  #loadedAt = new Date();
  #lastReload: AgentStatus['config']['lastReload'];
  #rules: LiveRule[] = [];
  readonly #limiter: Limiter;
  readonly metrics: AgentMetrics;
  readonly #monitor: Monitor;
  /** Latest record of each watched process (for the status and the dump size estimate). */
  readonly #latest = new Map<number, ProcessRecord>();
  readonly #recent: Firings[] = [];
  /** The firing in flight for a target, so 'action' and 'error' events add to its entry. */
  readonly #open = new Map<string, Firings>();
  #hostProcesses = 0;
  #crashListening: AbortController | undefined;

  /** Loads the rules file; throws ConfigError when it is bad (nothing started). */
  constructor(options: AgentOptions) {
    this.#o = options;
    this.#config = loadConfig(options.configPath);
    this.#limiter = new Limiter(this.#config.limits);
    this.metrics = new AgentMetrics(this.#config.maxSeries, {
      watched: () => this.#watched(),
      problems: () => this.#rules.map((r) => [r.config.name, this.#problems(r).length] as const),
    });
    this.#rules = this.#build(this.#config, []);
    this.#logFolders();
    this.#monitor = new Monitor({
      rules: this.#monitorRules(),
      pollMs: this.#config.pollMs,
      historySize: this.#config.historySize,
      fields: METRIC_FIELDS,
      signal: options.signal,
      admit: (target, firing) => this.#admit(target, firing),
    }).on((e) => this.#onEvent(e));
  }

  get config(): AgentConfig {
    return this.#config;
  }

  /** Where /metrics and /status are served: --metrics, else the file's `metrics`. */
  get listen(): { host: string; port: number } | undefined {
    return this.#o.metrics ?? this.#config.metrics;
  }

  #log(level: 'info' | 'warn' | 'error', message: string): void {
    this.#o.log?.(level, message);
  }

  /** Runs until the signal aborts. */
  async run(): Promise<void> {
    this.#listenForCrashes();
    this.metrics.reloadOk.set(1);
    try {
      await this.#monitor.run();
    } catch (e) {
      // The monitor failed (a bug: a rule's failures are contained where they happen). What it still
      // holds open (inspector and EventPipe sessions) is let go, so the process can end rather than hang.
      this.#monitor.setRules([]);
      throw e;
    } finally {
      this.#crashListening?.abort();
      this.#crashListening = undefined;
    }
  }

  /** Says, once per load, which folders of the rules cannot be used now (file:line:column). */
  #logFolders(): void {
    const c = this.#config;
    for (const f of c.folders) {
      const problem = folderProblem(f.dir);
      if (problem)
        this.#log(
          'error',
          `${c.file}:${f.line}:${f.column}: rule ${f.rule}: ${problem}: its firings are refused until it can be used`,
        );
    }
  }

  /**
   * Reads the rules file again. A bad file is refused whole (the running rules go on) and the error is
   * returned; a good one is applied: rules whose definition did not change keep their processes, histories
   * and counts, and the samplers go on.
   */
  reload(): { ok: true } | { ok: false; error: Error } {
    const time = new Date().toISOString();
    let next: AgentConfig;
    try {
      next = loadConfig(this.#o.configPath);
    } catch (e) {
      this.#lastReload = { time, ok: false, error: (e as Error).message };
      this.metrics.reloads.inc({ result: 'refused' });
      this.metrics.reloadOk.set(0);
      // One log line per problem (a ConfigError's lines have no line break of their own).
      for (const line of e instanceof ConfigError ? e.lines : [(e as Error).message])
        this.#log('error', `rules not reloaded, the running ones stay: ${line}`);
      return { ok: false, error: e as Error };
    }
    this.#config = next;
    this.#rules = this.#build(next, this.#rules);
    this.#limiter.reconfigure(next.limits, next.rules);
    this.metrics.maxSeries = next.maxSeries;
    this.#monitor.setRules(this.#monitorRules());
    this.#listenForCrashes();
    this.#loadedAt = new Date();
    this.#lastReload = { time, ok: true };
    this.metrics.reloads.inc({ result: 'applied' });
    this.metrics.reloadOk.set(1);
    this.#log('info', `rules reloaded from ${next.file}: ${next.rules.map((r) => r.name).join(', ')}`);
    this.#logFolders();
    return { ok: true };
  }

  #monitorRules(): MonitorRule[] {
    return this.#rules.flatMap((r) => (r.monitor ? [r.monitor] : []));
  }

  /** Live rules for a config; a rule defined exactly as before is the same live rule. */
  #build(config: AgentConfig, previous: readonly LiveRule[]): LiveRule[] {
    return config.rules.map((rule) => {
      const key = JSON.stringify(rule);
      const same = previous.find((p) => p.key === key);
      if (same) return same;
      const actions = rule.actions.flatMap((a) => this.#actions(rule, a));
      const crash = rule.trigger.crash === true;
      const test = compileFilter(rule.match);
      const live: LiveRule = {
        config: rule,
        key,
        crash,
        test,
        actions,
        dumpDirs: rule.actions.flatMap((a) => ('dump' in a ? [a.dump.dir] : 'node' in a ? [a.node.dir] : [])),
        folders: config.folders.filter((f) => f.rule === rule.name).map((f) => f.dir),
        monitor: undefined,
        firings: 0,
        suppressed: 0,
        errors: 0,
        failing: new Map(),
      };
      if (!crash) live.monitor = this.#monitorRule(live);
      return live;
    });
  }

  /**
   * A trigger of `live` failed on a process it watches: the rule's error (log, metric, status), retried
   * with backoff (retry.ts) while the process runs.
   */
  #retried(live: LiveRule, trigger: Trigger): Trigger {
    const name = live.config.name;
    return retrying(trigger, {
      failed: (pid, kind, error, attempts, retryInMs) => {
        const now = new Date();
        const before = live.failing.get(pid);
        const since = before?.since ?? now;
        live.failing.set(pid, {
          kind,
          message: error.message,
          since,
          attempts,
          retryAt: new Date(now.getTime() + retryInMs),
        });
        live.errors++;
        this.metrics.ruleErrors.inc({ rule: name, kind });
        // The log says a failure once, and again when it changes (a process that can never be reached,
        // such as one without a SIGUSR1 handler, would write a line a minute); /status and the metric count.
        if (before?.message === error.message) return;
        const target = this.#monitor.targets().find((t) => t.pid === pid && t.rule === name);
        this.#log(
          'error',
          `${name}: ${kind} trigger of ${target?.name ?? 'process'} (${pid}) failed: ${error.message}; retry ${attempts} in ${retryInMs / 1000} s`,
        );
      },
      recovered: (pid) => {
        if (live.failing.delete(pid)) this.#log('info', `${name}: the trigger of process ${pid} works again`);
      },
    });
  }

  #monitorRule(live: LiveRule): MonitorRule {
    const { config: rule, test, actions } = live;
    const t = rule.trigger;
    const triggers: Trigger[] = [];
    if (t.cpu !== undefined) triggers.push(new ThresholdTrigger('cpu', 'above', [t.cpu]));
    if (t.cpuBelow !== undefined) triggers.push(new ThresholdTrigger('cpu', 'below', [t.cpuBelow]));
    if (t.memory !== undefined) triggers.push(new ThresholdTrigger('memory', 'above', [t.memory]));
    if (t.memoryBelow !== undefined) triggers.push(new ThresholdTrigger('memory', 'below', [t.memoryBelow]));
    if (t.threads !== undefined) triggers.push(new ThresholdTrigger('threads', 'above', [t.threads]));
    if (t.fds !== undefined) triggers.push(new ThresholdTrigger('fds', 'above', [t.fds]));
    if (t.sockets !== undefined) triggers.push(new ThresholdTrigger('sockets', 'above', [t.sockets]));
    // The runtime triggers: the config checked that the rule matches only processes of their runtime.
    if (t.gcHeap !== undefined) {
      const { heap, thresholdsMB } = parseGcm(t.gcHeap);
      triggers.push(new GcMemoryTrigger(heap, thresholdsMB));
    }
    if (t.exception) triggers.push(new ExceptionTrigger(t.exception));
    if (t.counter)
      triggers.push(
        new CounterTrigger(parseCounterSpec(t.counter.name, 'counter'), t.counter.direction, t.counter.value),
      );
    if (t.heapUsed !== undefined) triggers.push(new HeapUsedTrigger([t.heapUsed]));
    if (t.loopDelayMs !== undefined)
      triggers.push(
        new LoopDelayTrigger(t.loopDelayMs, { intervalMs: this.#config.pollMs, sustainMs: t.forMs }),
      );
    return {
      name: rule.name,
      target: {
        // A snapshot's copy of a target being dumped has the target's name but is not a process to watch:
        // undecided, asked again while it lives (it is gone once the dump is over).
        match: ({ pid, comm, startTime }) => {
          const facts = new ProcessFacts(pid, comm, startTime);
          const ok = test(facts);
          return ok && facts.snapshotCopy ? undefined : ok;
        },
      },
      triggers: triggers.map((t) => this.#retried(live, t)),
      actions,
      count: t.count,
      cooldownMs: t.cooldownMs,
      sustainMs: t.forMs,
    };
  }

  #actions(rule: Rule, a: Rule['actions'][number]): Action[] {
    if ('dump' in a)
      return [
        new DumpAction({
          dir: a.dump.dir,
          ...(a.dump.mode ? { mode: a.dump.mode } : {}),
          ...(a.dump.filter !== undefined ? { filter: a.dump.filter } : {}),
          ...(a.dump.dotnet ? { dotnetType: a.dump.dotnet } : {}),
        }),
      ];
    if ('node' in a) {
      // One action per output, each writing only what the firing wants (by default the heap for heapUsed,
      // the stack for loopDelay); the stack first, while the loop is still blocked.
      const o = a.node;
      const options = {
        dir: o.dir,
        outputs: o.outputs,
        ...(o.profileSeconds !== undefined ? { profileSeconds: o.profileSeconds } : {}),
      };
      return (['stack', 'heap', 'report', 'profile'] as const).map((k) => new NodeOutputAction(k, options));
    }
    if ('history' in a) {
      const dir = a.history.dir;
      return [
        new HistoryAction((ctx) =>
          path.join(
            dir,
            `${ctx.target.name}_${ctx.firing.tag}_${timestamp(ctx.time)}.${ctx.target.pid}.json`,
          ),
        ),
      ];
    }
    return [new ExecAction(a.exec.map((x) => x.replaceAll('{rule}', rule.name)))];
  }

  #live(name: string | undefined): LiveRule | undefined {
    return this.#rules.find((r) => r.config.name === name);
  }

  /**
   * The rule's folders and the limits, once per firing, before any action. Whatever goes wrong in here is
   * the rule's error and refuses its firing: it never reaches the monitor (which would stop every rule).
   */
  #admit(target: TargetInfo, firing: Firing): string | undefined {
    const rule = this.#live(target.rule);
    if (!rule) return 'its rule was removed by a reload';
    let problem: string | undefined;
    let refused: ReturnType<Limiter['admit']>;
    try {
      problem = rule.folders.map(folderProblem).find((p) => p !== undefined);
      if (!problem) {
        const rss = this.#latest.get(target.pid)?.rssBytes;
        refused = this.#limiter.admit(rule.config, rule.dumpDirs, typeof rss === 'number' ? rss : 0);
      }
    } catch (e) {
      problem = (e as Error).message;
    }
    if (problem) {
      rule.errors++;
      this.metrics.ruleErrors.inc({ rule: rule.config.name, kind: 'folder' });
      const message = `${problem}: no action run`;
      this.#remember({
        time: new Date().toISOString(),
        rule: rule.config.name,
        pid: target.pid,
        name: target.name,
        trigger: firing.tag,
        reason: firing.reason,
        files: [],
        errors: [message],
      });
      this.#log(
        'error',
        `${rule.config.name}: ${firing.reason} on ${target.name} (${target.pid}): ${message}`,
      );
      return message;
    }
    if (!refused) return undefined;
    rule.suppressed++;
    this.metrics.suppressed.inc({ rule: rule.config.name, reason: refused.reason });
    this.#remember({
      time: new Date().toISOString(),
      rule: rule.config.name,
      pid: target.pid,
      name: target.name,
      trigger: firing.tag,
      reason: firing.reason,
      files: [],
      suppressed: refused.message,
      errors: [],
    });
    this.#log(
      'warn',
      `${rule.config.name}: ${firing.reason} on ${target.name} (${target.pid}): suppressed, ${refused.message}`,
    );
    return refused.message;
  }

  #remember(f: Firings): void {
    this.#recent.push(f);
    if (this.#recent.length > RECENT) this.#recent.shift();
  }

  /** The monitor calls its listeners inline: an error in the agent's bookkeeping must not stop it. */
  #onEvent(e: MonitorEvent): void {
    try {
      this.#account(e);
    } catch (err) {
      this.#log(
        'error',
        `${e.type} event of ${'target' in e ? e.target.pid : 'the host'}: ${(err as Error).message}`,
      );
    }
  }

  #account(e: MonitorEvent): void {
    switch (e.type) {
      case 'sweep':
        this.metrics.sweepSeconds.observe({ of: e.of }, e.durationMs / 1000);
        if (e.of === 'host') {
          this.#hostProcesses = e.processes;
          this.metrics.hostProcesses.set(e.processes);
        }
        return;
      case 'sample':
        this.#latest.set(e.target.pid, e.record);
        this.metrics.sample(e.target, e.record);
        return;
      case 'exit':
        this.#live(e.target.rule)?.failing.delete(e.target.pid);
        this.#latest.delete(e.target.pid);
        this.#open.delete(`${e.target.rule}:${e.target.pid}`); // its firing stays in #recent
        this.metrics.forget(e.target.pid);
        return;
      case 'fire': {
        const rule = this.#live(e.target.rule);
        if (rule) rule.firings++;
        this.metrics.fired.inc({ rule: e.target.rule ?? '', trigger: e.firing.tag });
        const f: Firings = {
          time: new Date().toISOString(),
          rule: e.target.rule ?? '',
          pid: e.target.pid,
          name: e.target.name,
          trigger: e.firing.tag,
          reason: e.firing.reason,
          files: [],
          errors: [],
        };
        this.#open.set(`${e.target.rule}:${e.target.pid}`, f);
        this.#remember(f);
        this.#log('info', `${f.rule}: ${f.reason} on ${f.name} (${f.pid})`);
        return;
      }
      case 'action': {
        const f = this.#open.get(`${e.target.rule}:${e.target.pid}`);
        if (e.path) {
          f?.files.push(e.path);
          this.#wrote(e.target.rule ?? '', e.path, e.kind === 'dump');
        }
        this.#log('info', `${e.target.rule}: ${e.message}`);
        return;
      }
      case 'error': {
        const rule = e.target.rule ?? '';
        if (e.kind === 'dump') this.metrics.dumpsFailed.inc({ rule });
        if (!(e.error instanceof AbortError)) {
          this.metrics.ruleErrors.inc({ rule, kind: e.kind });
          const live = this.#live(e.target.rule);
          if (live) live.errors++;
        }
        this.#open.get(`${rule}:${e.target.pid}`)?.errors.push(`${e.kind}: ${e.error.message}`);
        this.#log(
          'error',
          `${rule}: ${e.kind} of ${e.target.name} (${e.target.pid}) failed: ${e.error.message}`,
        );
        return;
      }
      default:
        return;
    }
  }

  /** Counts what an action wrote: dumps against the host byte window, everything in the metrics. */
  #wrote(rule: string, file: string, dump: boolean): void {
    let bytes = 0;
    try {
      bytes = statSync(file).blocks * 512;
    } catch {
      // moved away already: nothing to count
    }
    this.metrics.bytes.inc({ rule }, bytes);
    if (dump) {
      this.metrics.dumps.inc({ rule });
      this.#limiter.wrote(bytes);
    }
  }

  /** Crash rules need the handler's notifications: listen while there is one. */
  #listenForCrashes(): void {
    const wanted = this.#rules.some((r) => r.crash);
    if (!wanted) {
      this.#crashListening?.abort();
      this.#crashListening = undefined;
      return;
    }
    if (this.#crashListening) return;
    const ctl = new AbortController();
    this.#o.signal.addEventListener('abort', () => ctl.abort(), { once: true });
    this.#crashListening = ctl;
    const trigger = new CrashTrigger({
      socketPath: this.#config.crashSocket ?? DEFAULT_SOCKET,
      onError: (err) => this.#log('error', `crash notifications: ${err.message}`),
    });
    trigger.subscribe((info) => this.#onCrash(info), ctl.signal);
  }

  /** A crash the handler reported: every crash rule that matches runs its actions (through the limits). */
  #onCrash(info: CrashInfo): void {
    const facts = crashFacts(info);
    for (const rule of this.#rules) {
      if (!rule.crash || !rule.test(facts)) continue;
      const target: TargetInfo = {
        pid: info.pid,
        startTime: info.time.getTime(),
        name: sanitize(info.exeName) || 'unknown',
        rule: rule.config.name,
      };
      void this.#monitor.dispatch(
        target,
        {
          tag: 'crash',
          met: true,
          value: info.signal,
          threshold: 0,
          reason: `crashed with signal ${info.signal}${info.coreFile ? `, core in ${info.coreFile}` : ''}`,
        },
        rule.actions,
      );
    }
  }

  /** The processes each rule watches now, from the monitor: what /status lists and /metrics counts. */
  #matched(): Map<string, { pid: number; name: string }[]> {
    const matched = new Map<string, { pid: number; name: string }[]>();
    for (const r of this.#rules) matched.set(r.config.name, []);
    for (const t of this.#monitor.targets()) matched.get(t.rule ?? '')?.push({ pid: t.pid, name: t.name });
    // A process the monitor let go without an exit (its rule removed by a reload) has no series left.
    const pids = new Set([...matched.values()].flat().map((t) => t.pid));
    for (const pid of this.#latest.keys())
      if (!pids.has(pid)) {
        this.#latest.delete(pid);
        this.metrics.forget(pid);
      }
    return matched;
  }

  #watched(): [string, number][] {
    return [...this.#matched()].map(([rule, list]) => [rule, list.length]);
  }

  /** What keeps a rule from doing its job now (looked at when asked: a folder may come and go). */
  #problems(r: LiveRule): RuleProblem[] {
    const out: RuleProblem[] = [];
    for (const dir of new Set(r.folders)) {
      const message = folderProblem(dir);
      if (message) out.push({ kind: 'folder', message });
    }
    // Names only when something fails: a scrape asks every rule, and the targets may be thousands.
    const names = r.failing.size ? new Map(this.#monitor.targets().map((t) => [t.pid, t.name])) : undefined;
    for (const [pid, f] of r.failing)
      out.push({
        kind: f.kind,
        message: f.message,
        pid,
        ...(names?.has(pid) ? { name: names.get(pid)! } : {}),
        since: f.since.toISOString(),
        attempts: f.attempts,
        retryAt: f.retryAt.toISOString(),
      });
    return out;
  }

  /** The Prometheus exposition. */
  exposition(): Promise<{ contentType: string; body: string }> {
    return this.metrics.exposition();
  }

  status(): AgentStatus {
    const matched = this.#matched();
    return {
      config: {
        file: this.#config.file,
        loadedAt: this.#loadedAt.toISOString(),
        ...(this.#lastReload ? { lastReload: this.#lastReload } : {}),
      },
      rules: this.#rules.map((r) => ({
        name: r.config.name,
        matched: matched.get(r.config.name) ?? [],
        firings: r.firings,
        suppressed: r.suppressed,
        errors: r.errors,
        problems: this.#problems(r),
      })),
      limits: {
        bytesInWindow: this.#limiter.bytesInWindow(),
        ...(this.#config.limits.bytes !== undefined ? { bytesLimit: this.#config.limits.bytes } : {}),
        windowMs: this.#config.limits.windowMs,
      },
      processes: { watched: this.#latest.size, host: this.#hostProcesses },
      recent: [...this.#recent],
    };
  }
}

/** What a crash rule's filter looks at, from the notification and the handler's metadata file. */
function crashFacts(info: CrashInfo): ProcessFacts {
  let meta: { cmdline?: string[]; cgroup?: string; exe?: string } = {};
  if (info.metadataFile)
    try {
      meta = JSON.parse(readFileSync(info.metadataFile, 'utf8')) as typeof meta;
    } catch {
      // no metadata: the filters that need it do not match
    }
  return ProcessFacts.known(info.pid, info.exeName, {
    argv: meta.cmdline ?? [],
    exe: meta.exe ?? info.exePath,
    uid: info.uid,
    cgroup: meta.cgroup ?? '',
  });
}
