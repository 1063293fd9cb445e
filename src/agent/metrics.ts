// The agent's Prometheus exposition. Its own metrics go through prom-client; the per-process gauges are
// written straight from the latest samples, because prom-client builds and hashes a label object per series
// (measured: ~0.4-0.6 s of CPU per scrape for 10,000 processes × 5 gauges, against ~0.05 s this way).
//
// Cardinality: only processes a rule matches have series; one set per process (`rule` is the first rule in
// the file that matched it); at most `maxSeries` processes (the rest are counted in
// tripdump_agent_series_dropped); a process that exits has no series from the next scrape on.
import { readdirSync } from 'node:fs';
import client from 'prom-client';
import type { TargetInfo } from '../actions/action.js';
import type { ProcessRecord } from '../sampler/fields.js';

const TICKS_PER_SECOND = 100;

interface Row {
  /** `{pid="…",comm="…",rule="…"}`, escaped once when the process is first seen. */
  labels: string;
  record: ProcessRecord;
}

/** Per-process gauges: name, help, the record's field, and a scale. */
const GAUGES = [
  [
    'tripdump_process_cpu_percent',
    'CPU over the last polling interval, percent of one core.',
    'cpuPercent',
    1,
  ],
  ['tripdump_process_resident_memory_bytes', 'Resident set size.', 'rssBytes', 1],
  ['tripdump_process_virtual_memory_bytes', 'Virtual memory size.', 'vmBytes', 1],
  ['tripdump_process_threads', 'Threads.', 'threads', 1],
  ['tripdump_process_open_fds', 'Open file descriptors.', 'fds', 1],
  ['tripdump_process_start_time_seconds', 'Start time, seconds since the epoch.', 'startTime', 1e-3],
] as const;

function escapeLabel(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

export class AgentMetrics {
  readonly registry = new client.Registry();
  readonly #rows = new Map<number, Row>();
  #maxSeries: number;
  /** Watched processes that have no series because of the cap. */
  readonly #dropped = new Set<number>();

  readonly sweepSeconds = new client.Histogram({
    name: 'tripdump_agent_sweep_duration_seconds',
    help: 'Time one sweep took on the sampler thread: of the watched processes, or of every process (host).',
    labelNames: ['of'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  });
  readonly hostProcesses = new client.Gauge({
    name: 'tripdump_agent_host_processes',
    help: 'Processes on the host in the last discovery sweep.',
    registers: [this.registry],
  });
  readonly watched: client.Gauge;
  readonly problems: client.Gauge;
  readonly fired = new client.Counter({
    name: 'tripdump_agent_triggers_fired_total',
    help: 'Firings whose actions ran.',
    labelNames: ['rule', 'trigger'],
    registers: [this.registry],
  });
  readonly suppressed = new client.Counter({
    name: 'tripdump_agent_actions_suppressed_total',
    help: 'Firings a limit held back: rule-limit, host-bytes or disk-floor.',
    labelNames: ['rule', 'reason'],
    registers: [this.registry],
  });
  readonly dumps = new client.Counter({
    name: 'tripdump_agent_dumps_written_total',
    help: 'Dump files written.',
    labelNames: ['rule'],
    registers: [this.registry],
  });
  readonly dumpsFailed = new client.Counter({
    name: 'tripdump_agent_dumps_failed_total',
    help: 'Dumps that failed (or were cancelled).',
    labelNames: ['rule'],
    registers: [this.registry],
  });
  readonly bytes = new client.Counter({
    name: 'tripdump_agent_written_bytes_total',
    help: 'Bytes on disk of the files actions wrote (dumps and histories).',
    labelNames: ['rule'],
    registers: [this.registry],
  });
  readonly ruleErrors = new client.Counter({
    name: 'tripdump_agent_rule_errors_total',
    help: 'Actions or triggers of a rule that failed (a dump, an exec, a trigger that could not start).',
    labelNames: ['rule', 'kind'],
    registers: [this.registry],
  });
  readonly reloads = new client.Counter({
    name: 'tripdump_agent_config_reloads_total',
    help: 'Rules file reloads, by result.',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly reloadOk = new client.Gauge({
    name: 'tripdump_agent_config_last_reload_successful',
    help: '1 if the last reload of the rules file was applied, 0 if it was refused (the previous rules run).',
    registers: [this.registry],
  });
  readonly seriesDropped = new client.Gauge({
    name: 'tripdump_agent_series_dropped',
    help: 'Watched processes without per-process series because of the maxSeries cap.',
    registers: [this.registry],
  });

  /**
   * `state`: what the per-rule gauges are, asked at each scrape: the same state the agent's /status
   * document is made of, so both always agree.
   */
  constructor(
    maxSeries: number,
    state: {
      watched(): Iterable<readonly [rule: string, n: number]>;
      problems(): Iterable<readonly [rule: string, n: number]>;
    },
  ) {
    this.#maxSeries = maxSeries;
    const perRule = (name: string, help: string, values: () => Iterable<readonly [string, number]>) =>
      new client.Gauge({
        name,
        help,
        labelNames: ['rule'],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const [rule, n] of values()) this.set({ rule }, n);
        },
      });
    this.watched = perRule(
      'tripdump_agent_processes_watched',
      'Processes a rule matches, by rule.',
      state.watched,
    );
    this.problems = perRule(
      'tripdump_agent_rule_problems',
      'What keeps a rule from doing its job now: its folders that cannot be used, its triggers failing on a process (retried). /status lists them.',
      state.problems,
    );
    // The agent's own CPU, memory and fds under the names every exporter uses for itself (prom-client's
    // default set adds Node internals whose names promtool refuses, such as gauges ending in _total).
    new client.Counter({
      name: 'process_cpu_seconds_total',
      help: "The agent's user and system CPU time.",
      registers: [this.registry],
      collect() {
        const { user, system } = process.cpuUsage();
        this.reset();
        this.inc((user + system) / 1e6);
      },
    });
    new client.Gauge({
      name: 'process_resident_memory_bytes',
      help: "The agent's resident memory.",
      registers: [this.registry],
      collect() {
        this.set(process.memoryUsage.rss());
      },
    });
    new client.Gauge({
      name: 'process_open_fds',
      help: "The agent's open file descriptors.",
      registers: [this.registry],
      collect() {
        this.set(readdirSync('/proc/self/fd').length);
      },
    });
    new client.Gauge({
      name: 'process_start_time_seconds',
      help: "The agent's start time, seconds since the epoch.",
      registers: [this.registry],
    }).set(Math.round(Date.now() / 1000 - process.uptime()));
  }

  set maxSeries(n: number) {
    this.#maxSeries = n;
  }

  /** The latest sample of a watched process (its first sample gives it series, within the cap). */
  sample(target: TargetInfo, record: ProcessRecord): void {
    const row = this.#rows.get(target.pid);
    if (row) {
      row.record = record;
      return;
    }
    if (this.#rows.size >= this.#maxSeries) {
      this.#dropped.add(target.pid);
      return;
    }
    this.#dropped.delete(target.pid);
    const comm = typeof record.comm === 'string' ? record.comm : target.name;
    this.#rows.set(target.pid, {
      labels: `{pid="${target.pid}",comm="${escapeLabel(comm)}",rule="${escapeLabel(target.rule ?? '')}"}`,
      record,
    });
  }

  /** The process is gone (or no rule watches it any more): its series go. */
  forget(pid: number): void {
    this.#rows.delete(pid);
    this.#dropped.delete(pid);
  }

  /** Series in the exposition now (processes). */
  get series(): number {
    return this.#rows.size;
  }

  async exposition(): Promise<{ contentType: string; body: string }> {
    this.seriesDropped.set(this.#dropped.size);
    const parts = [await this.registry.metrics()];
    const rows = [...this.#rows.values()];
    for (const [name, help, field, scale] of GAUGES) {
      const lines: string[] = [];
      for (const r of rows) {
        const v = r.record[field];
        if (typeof v === 'number') lines.push(`${name}${r.labels} ${v * scale}\n`);
      }
      if (lines.length) parts.push(`# HELP ${name} ${help}\n# TYPE ${name} gauge\n`, ...lines);
    }
    const cpu: string[] = [];
    for (const r of rows) {
      const u = r.record.userTicks;
      const s = r.record.systemTicks;
      if (typeof u === 'number' && typeof s === 'number')
        cpu.push(`tripdump_process_cpu_seconds_total${r.labels} ${(u + s) / TICKS_PER_SECOND}\n`);
    }
    if (cpu.length)
      parts.push(
        '# HELP tripdump_process_cpu_seconds_total User and system CPU time.\n# TYPE tripdump_process_cpu_seconds_total counter\n',
        ...cpu,
      );
    return { contentType: this.registry.contentType, body: parts.join('') };
  }
}
