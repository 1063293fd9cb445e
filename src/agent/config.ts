// The agent's rules file: YAML or JSON (YAML 1.2 reads both), checked against the JSON Schema that ships
// with the package (schema.json), then turned into typed rules. Every error names the file, the line and
// column of the offending value, and what is wrong; nothing of a bad file is used.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import picomatch from 'picomatch';
import { type Document, isAlias, LineCounter, parseDocument, visit } from 'yaml';
import { UsageError } from '../errors.js';
import type { DotnetDumpType } from '../runtimes/dotnet/dump.js';
import { parseCounterSpec, parseGcm } from '../runtimes/dotnet/triggers.js';
import schema from './schema.json' with { type: 'json' };

/**
 * The largest rules file read. A thousand rules (the schema's most) fit in a tenth of it; a Kubernetes
 * ConfigMap cannot be larger. Past it, parsing and checking cost seconds and hundreds of MB before any
 * refusal could be said.
 */
export const MAX_CONFIG_BYTES = 2 ** 20;
/** Aliases a rules file may resolve: a few anchors shared by rules; a YAML alias bomb needs millions. */
const MAX_ALIASES = 100;

/** Where in a rules file: line and column from 1; 0 for the file as a whole. */
export interface Place {
  line: number;
  column: number;
}

/**
 * A rules file that cannot be used: `file:line:column: reason`, one line per problem. Each line says one
 * problem: a line break quoted from the file is written as `\n`, so the lines cannot be forged by it.
 */
export class ConfigError extends UsageError {
  override name = 'ConfigError';
  /** One per problem, without line breaks. */
  readonly lines: readonly string[];
  constructor(
    readonly file: string,
    readonly problems: readonly (Place & { message: string })[],
  ) {
    const lines = problems.map((p) =>
      `${p.line ? `${file}:${p.line}:${p.column}` : file}: ${p.message}`.replace(/\r?\n/g, '\\n'),
    );
    super(lines.join('\n'), '--config');
    this.lines = lines;
  }
}

/** A folder an action writes to, and where the file names it (for `agent check` and the rule's status). */
export interface FolderRef extends Place {
  rule: string;
  dir: string;
}

export interface ProcessFilter {
  comm?: readonly string[];
  name?: readonly string[];
  cmdline?: readonly string[];
  exe?: readonly string[];
  uid?: readonly number[];
  cgroup?: readonly string[];
  container?: string;
  runtime?: 'node' | 'dotnet';
}

export interface RuleTrigger {
  cpu?: number;
  cpuBelow?: number;
  memory?: number;
  memoryBelow?: number;
  threads?: number;
  fds?: number;
  sockets?: number;
  crash?: true;
  /** .NET: as -gcm's value (`[GEN:]MB`). */
  gcHeap?: string;
  /** .NET: -e, with -f's filters (empty: every exception). */
  exception?: readonly string[];
  /** .NET: -pc / -pcl. */
  counter?: { name: string; direction: 'above' | 'below'; value: number };
  /** Node.js: --heap-used, MB. */
  heapUsed?: number;
  /** Node.js: --loop-delay. */
  loopDelayMs?: number;
  forMs: number;
  cooldownMs: number;
  count: number;
}

export type RuleAction =
  | { dump: { dir: string; mode?: 'snapshot' | 'stop'; filter?: number; dotnet?: DotnetDumpType } }
  | {
      node: {
        dir: string;
        outputs?: readonly ('heap' | 'stack' | 'report' | 'profile')[];
        profileSeconds?: number;
      };
    }
  | { history: { dir: string } }
  | { exec: readonly string[] };

export interface Rule {
  name: string;
  match: ProcessFilter;
  trigger: RuleTrigger;
  actions: readonly RuleAction[];
  limit?: { count: number; windowMs: number };
}

export interface AgentConfig {
  /** Where the rules came from. */
  file: string;
  metrics?: { host: string; port: number };
  /** Where the crash handler notifies crashes (crash rules). */
  crashSocket?: string;
  pollMs: number;
  historySize: number;
  maxSeries: number;
  limits: {
    bytes?: number;
    windowMs: number;
    /** Free space to keep on a dump's filesystem: bytes, or a fraction of its size. */
    minFree: { bytes: number } | { fraction: number };
  };
  rules: readonly Rule[];
  /** The folders the rules' actions write to, each with its place in the file. */
  folders: readonly FolderRef[];
}

const UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  PB: 1e15,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
  PiB: 2 ** 50,
};
const DURATIONS: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 };

/** '500MiB' → bytes (the schema has checked the shape). */
export function parseSize(v: number | string): number {
  if (typeof v === 'number') return v;
  const m = /^([0-9]+(?:\.[0-9]+)?)([A-Za-z]+)$/.exec(v)!;
  return Math.round(Number(m[1]) * UNITS[m[2]!]!);
}

/** '30s' or 30 (seconds) → ms. */
export function parseDuration(v: number | string): number {
  if (typeof v === 'number') return v * 1000;
  const m = /^([0-9]+(?:\.[0-9]+)?)([a-z]+)$/.exec(v)!;
  return Number(m[1]) * DURATIONS[m[2]!]!;
}

// Compiled with the first rules file read, not when this module loads: importing tripdump/agent (or the
// agent command's --help) costs no schema compilation.
let compiled: ValidateFunction | undefined;
function validator(): ValidateFunction {
  compiled ??= new Ajv({ allErrors: true, strict: true, verbose: true }).compile(schema);
  return compiled;
}

type Path = readonly (string | number)[];
interface Problem {
  path: Path;
  message: string;
}

/** The most useful of ajv's messages for one place: a oneOf's alternatives collapse into one line. */
function describeAjv(errors: readonly ErrorObject[]): Problem[] {
  const byPath = new Map<string, ErrorObject[]>();
  for (const e of errors) {
    const at =
      e.keyword === 'additionalProperties'
        ? `${e.instancePath}/${(e.params as { additionalProperty: string }).additionalProperty}`
        : e.instancePath;
    byPath.set(at, [...(byPath.get(at) ?? []), e]);
  }
  const out: Problem[] = [];
  for (const [at, list] of byPath) {
    const path = at
      .split('/')
      .slice(1)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
      .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
    const where = path.length ? String(path[path.length - 1]) : 'the file';
    const first = list.find((e) => e.keyword !== 'oneOf') ?? list[0]!;
    let message: string;
    switch (first.keyword) {
      case 'additionalProperties':
        message = `unknown key '${where}'`;
        break;
      case 'required':
        message = `'${(first.params as { missingProperty: string }).missingProperty}' is required here`;
        break;
      case 'enum':
        message = `${where} must be one of ${(first.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
        break;
      default: {
        // For a oneOf (number or string), the alternatives' own messages say little: the schema that
        // holds the oneOf describes what is expected.
        const oneOf = list.find((e) => e.keyword === 'oneOf');
        const doc = ((oneOf ?? first).parentSchema as { description?: string } | undefined)?.description;
        message = `${where}: ${oneOf ? 'not a valid value' : (first.message ?? 'not valid')}${doc ? ` (${doc})` : ''}`;
      }
    }
    out.push({ path, message });
  }
  return out;
}

function position(doc: Document, lines: LineCounter, path: Path): Place {
  // The deepest node that exists on the path: a missing key is reported where its parent is.
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
    const key = n > 0 && typeof path[n - 1] === 'string' ? keyNode(doc, path.slice(0, n)) : undefined;
    const range = key?.range ?? node?.range;
    if (range) {
      const { line, col } = lines.linePos(range[0]);
      return { line, column: col };
    }
  }
  return { line: 1, column: 1 };
}

/** For an unknown key, the key itself is the place to point at. */
function keyNode(doc: Document, path: Path): { range?: [number, number, number] } | undefined {
  const parent = doc.getIn(path.slice(0, -1), true) as
    | { items?: { key?: { value?: unknown; range?: [number, number, number] } }[] }
    | undefined;
  return parent?.items?.find((p) => p.key?.value === path[path.length - 1])?.key;
}

const list = <T>(v: T | readonly T[] | undefined): readonly T[] | undefined =>
  v === undefined ? undefined : Array.isArray(v) ? (v as readonly T[]) : [v as T];

/** Reads and checks a rules file. Throws ConfigError (file:line:column) for anything wrong in it. */
export function loadConfig(file: string): AgentConfig {
  return parseConfig(readRules(file), file);
}

/** The text of a rules file: a regular file of at most MAX_CONFIG_BYTES (a FIFO or /dev/zero never ends). */
function readRules(file: string): string {
  const whole = (message: string) => new ConfigError(file, [{ line: 0, column: 0, message }]);
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw whole(`cannot read: ${(e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw whole('not a regular file');
    const tooLarge = (size: number) =>
      whole(
        `${size} bytes (${(size / 2 ** 20).toFixed(1)} MiB) is more than a rules file may be: at most ${MAX_CONFIG_BYTES} bytes (${MAX_CONFIG_BYTES / 2 ** 20} MiB)`,
      );
    if (st.size > MAX_CONFIG_BYTES) throw tooLarge(st.size);
    // The size may change under us: one byte more than the cap is enough to know.
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let n = 0;
    for (let got = 1; got > 0 && n < buf.length; n += got) got = readSync(fd, buf, n, buf.length - n, null);
    if (n > MAX_CONFIG_BYTES) throw tooLarge(n);
    return buf.toString('utf8', 0, n);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw whole(`cannot read: ${(e as Error).message}`);
  } finally {
    closeSync(fd);
  }
}

/** Checks the text of a rules file named `file` (for messages). */
export function parseConfig(text: string, file: string): AgentConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length)
    throw new ConfigError(
      file,
      doc.errors.map((e) => {
        const { line, col } = lines.linePos(e.pos[0]);
        return { line, column: col, message: e.message.split('\n')[0]! };
      }),
    );
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (e) {
    // yaml refuses (a ReferenceError) once the aliases expand past the count: point at the first alias.
    let at: Place = { line: 1, column: 1 };
    visit(doc, {
      Alias(_, node) {
        if (isAlias(node) && node.range) {
          const { line, col } = lines.linePos(node.range[0]);
          at = { line, column: col };
          return visit.BREAK;
        }
        return undefined;
      },
    });
    throw new ConfigError(file, [
      {
        ...at,
        message: /alias/i.test((e as Error).message)
          ? `the aliases expand to more than ${MAX_ALIASES} nodes (an alias bomb?): write the values out`
          : `cannot be read as data: ${(e as Error).message}`,
      },
    ]);
  }
  const fail = (problems: Problem[]): never => {
    throw new ConfigError(
      file,
      problems.map((p) => ({ ...position(doc, lines, p.path), message: p.message })),
    );
  };
  const validate = validator();
  if (!validate(raw)) fail(describeAjv(validate.errors ?? []));
  const c = raw as RawConfig;

  // What the schema cannot say.
  const problems: Problem[] = [];
  const check = (ok: boolean, path: Path, message: string) => {
    if (!ok) problems.push({ path, message });
  };
  const names = new Set<string>();
  c.rules.forEach((r, i) => {
    check(!names.has(r.name), ['rules', i, 'name'], `a rule named '${r.name}' is defined twice`);
    names.add(r.name);
    const t = r.trigger;
    const kinds = Object.keys(t).filter((k) => !['for', 'cooldown', 'count'].includes(k));
    check(
      kinds.length > 0,
      ['rules', i, 'trigger'],
      'the trigger needs a condition (cpu, memory, threads, fds, sockets, crash…)',
    );
    check(
      !(t.cpu !== undefined && t.cpuBelow !== undefined),
      ['rules', i, 'trigger', 'cpuBelow'],
      'cpu and cpuBelow contradict each other: give one',
    );
    check(
      !(t.memory !== undefined && t.memoryBelow !== undefined),
      ['rules', i, 'trigger', 'memoryBelow'],
      'memory and memoryBelow contradict each other: give one',
    );
    check(
      !(t.crash && kinds.length > 1),
      ['rules', i, 'trigger', 'crash'],
      'crash cannot be combined with thresholds in one rule: make it a rule of its own',
    );
    const runtimeTriggers = {
      dotnet: ['gcHeap', 'exception', 'counter'],
      node: ['heapUsed', 'loopDelay'],
    } as const;
    for (const [runtime, keys] of Object.entries(runtimeTriggers))
      for (const k of keys)
        check(
          t[k] === undefined || r.match.runtime === runtime,
          ['rules', i, 'trigger', k],
          `${k} is a ${runtime === 'node' ? 'Node.js' : '.NET'} trigger: the rule needs match.runtime: ${runtime}`,
        );
    check(
      !(t.crash && r.match.runtime),
      ['rules', i, 'match', 'runtime'],
      'a crash rule cannot filter by runtime (the process is gone by the time it is matched)',
    );
    if (t.gcHeap !== undefined)
      try {
        parseGcm(String(t.gcHeap));
      } catch (e) {
        check(false, ['rules', i, 'trigger', 'gcHeap'], (e as Error).message.replace('-gcm', 'gcHeap'));
      }
    if (t.counter) {
      try {
        parseCounterSpec(t.counter.name, 'counter.name');
      } catch (e) {
        check(false, ['rules', i, 'trigger', 'counter', 'name'], (e as Error).message);
      }
      check(
        (t.counter.above === undefined) !== (t.counter.below === undefined),
        ['rules', i, 'trigger', 'counter'],
        'counter needs one of above or below',
      );
    }
    if (t.loopDelay !== undefined) {
      const ms = parseDuration(t.loopDelay);
      check(
        ms >= 1 && ms <= 3600e3,
        ['rules', i, 'trigger', 'loopDelay'],
        `loopDelay must be between 1ms and 1h, got ${t.loopDelay}`,
      );
    }
    r.actions.forEach((a, j) => {
      check(
        !('node' in a) || r.match.runtime === 'node',
        ['rules', i, 'actions', j, 'node'],
        'node actions need a Node.js process: the rule needs match.runtime: node',
      );
    });
    if (t.crash)
      r.actions.forEach((a, j) => {
        check(
          !('dump' in a),
          ['rules', i, 'actions', j, 'dump'],
          'a crash rule cannot dump the process (it is gone; the crash handler keeps its core): use exec or history',
        );
      });
    for (const [k, globs] of Object.entries(r.match))
      if (['comm', 'name', 'cmdline', 'exe', 'cgroup'].includes(k))
        for (const g of list(globs as string | string[])!)
          try {
            picomatch.makeRe(g);
          } catch (e) {
            check(false, ['rules', i, 'match', k], `bad glob '${g}': ${(e as Error).message}`);
          }
    if (r.limit) {
      const w = parseDuration(r.limit.window);
      check(
        w >= 1000 && w <= 30 * 86400e3,
        ['rules', i, 'limit', 'window'],
        `window must be between 1s and 30d, got ${r.limit.window}`,
      );
    }
    for (const [k, v] of [
      ['for', t.for],
      ['cooldown', t.cooldown],
    ] as const)
      if (v !== undefined) {
        const ms = parseDuration(v);
        check(ms <= 30 * 86400e3, ['rules', i, 'trigger', k], `${k} must be at most 30d, got ${v}`);
      }
    r.actions.forEach((a, j) => {
      if ('dump' in a && a.dump.filter !== undefined && typeof a.dump.filter === 'string')
        check(
          Number.parseInt(a.dump.filter.replace(/^0x/i, ''), 16) <= 0x1ff,
          ['rules', i, 'actions', j, 'dump', 'filter'],
          `filter must be at most 0x1ff, got ${a.dump.filter}`,
        );
    });
  });
  const pollMs = c.poll === undefined ? 1000 : parseDuration(c.poll);
  check(
    pollMs >= 10 && pollMs <= 3600e3,
    ['poll'],
    `poll must be between 10ms and 1h, got ${String(c.poll)}`,
  );
  const windowMs = c.limits?.window === undefined ? 3600e3 : parseDuration(c.limits.window);
  check(
    windowMs >= 1000 && windowMs <= 30 * 86400e3,
    ['limits', 'window'],
    `window must be between 1s and 30d, got ${String(c.limits?.window)}`,
  );
  const bytes = c.limits?.bytes === undefined ? undefined : parseSize(c.limits.bytes);
  check(
    bytes === undefined || (bytes >= 2 ** 20 && bytes <= 2 ** 50),
    ['limits', 'bytes'],
    `bytes must be between 1MiB and 1PiB, got ${String(c.limits?.bytes)}`,
  );
  const minFreeRaw = c.limits?.minFree ?? '5%';
  const minFree: AgentConfig['limits']['minFree'] =
    typeof minFreeRaw === 'string' && minFreeRaw.endsWith('%')
      ? { fraction: Number(minFreeRaw.slice(0, -1)) / 100 }
      : { bytes: parseSize(minFreeRaw) };
  check(
    !('fraction' in minFree) || minFree.fraction <= 1,
    ['limits', 'minFree'],
    `minFree must be at most 100%, got ${String(minFreeRaw)}`,
  );
  let metrics: AgentConfig['metrics'];
  if (c.metrics !== undefined) {
    metrics = parseListen(c.metrics);
    // Port 0: any free port (the agent prints the one it got).
    check(metrics.port <= 65535, ['metrics'], `port must be 0 to 65535, got ${metrics.port}`);
  }
  if (problems.length) fail(problems);

  const folders: FolderRef[] = [];
  c.rules.forEach((r, i) => {
    r.actions.forEach((a, j) => {
      const kind = 'dump' in a ? 'dump' : 'node' in a ? 'node' : 'history' in a ? 'history' : undefined;
      if (!kind) return;
      const dir = (a as Record<typeof kind, { dir: string }>)[kind].dir;
      folders.push({ rule: r.name, dir, ...position(doc, lines, ['rules', i, 'actions', j, kind, 'dir']) });
    });
  });

  return {
    folders,
    file,
    ...(metrics ? { metrics } : {}),
    ...(c.crashSocket ? { crashSocket: c.crashSocket } : {}),
    pollMs,
    historySize: c.history ?? 60,
    maxSeries: c.maxSeries ?? 10_000,
    limits: { ...(bytes !== undefined ? { bytes } : {}), windowMs, minFree },
    rules: c.rules.map((r) => ({
      name: r.name,
      match: {
        ...(r.match.comm ? { comm: list(r.match.comm) } : {}),
        ...(r.match.name ? { name: list(r.match.name) } : {}),
        ...(r.match.cmdline ? { cmdline: list(r.match.cmdline) } : {}),
        ...(r.match.exe ? { exe: list(r.match.exe) } : {}),
        ...(r.match.uid !== undefined ? { uid: list(r.match.uid) } : {}),
        ...(r.match.cgroup ? { cgroup: list(r.match.cgroup) } : {}),
        ...(r.match.container ? { container: r.match.container } : {}),
        ...(r.match.runtime ? { runtime: r.match.runtime } : {}),
      },
      trigger: ruleTrigger(r.trigger),
      actions: r.actions.map((a): RuleAction => {
        if ('dump' in a) {
          const { filter, ...rest } = a.dump;
          return {
            dump: {
              ...rest,
              ...(filter !== undefined
                ? {
                    filter:
                      typeof filter === 'number' ? filter : Number.parseInt(filter.replace(/^0x/i, ''), 16),
                  }
                : {}),
            },
          };
        }
        return a;
      }),
      ...(r.limit ? { limit: { count: r.limit.count, windowMs: parseDuration(r.limit.window) } } : {}),
    })),
  };
}

/** 'HOST:PORT' or '[v6]:PORT'. */
export function parseListen(v: string): { host: string; port: number } {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(v);
  if (!m) throw new UsageError(`expected HOST:PORT, got '${v}'`, '--metrics');
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

function ruleTrigger(t: RawConfig['rules'][number]['trigger']): RuleTrigger {
  return {
    ...pick(t, [
      'cpu',
      'cpuBelow',
      'memory',
      'memoryBelow',
      'threads',
      'fds',
      'sockets',
      'crash',
      'heapUsed',
    ]),
    ...(t.gcHeap !== undefined ? { gcHeap: String(t.gcHeap) } : {}),
    ...(t.exception !== undefined ? { exception: t.exception === true ? [] : t.exception } : {}),
    ...(t.counter
      ? {
          counter:
            t.counter.above !== undefined
              ? { name: t.counter.name, direction: 'above' as const, value: t.counter.above }
              : { name: t.counter.name, direction: 'below' as const, value: t.counter.below ?? 0 },
        }
      : {}),
    ...(t.loopDelay !== undefined ? { loopDelayMs: parseDuration(t.loopDelay) } : {}),
    forMs: t.for === undefined ? 0 : parseDuration(t.for),
    cooldownMs: t.cooldown === undefined ? 10_000 : parseDuration(t.cooldown),
    count: t.count ?? Number.MAX_SAFE_INTEGER,
  };
}

function pick<T extends object, K extends keyof T>(o: T, keys: readonly K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

interface RawConfig {
  metrics?: string;
  crashSocket?: string;
  poll?: number | string;
  history?: number;
  maxSeries?: number;
  limits?: { bytes?: number | string; window?: number | string; minFree?: number | string };
  rules: {
    name: string;
    match: Record<string, unknown> & {
      comm?: string | string[];
      name?: string | string[];
      cmdline?: string | string[];
      exe?: string | string[];
      uid?: number | number[];
      cgroup?: string | string[];
      container?: string;
      runtime?: 'node' | 'dotnet';
    };
    trigger: {
      cpu?: number;
      cpuBelow?: number;
      memory?: number;
      memoryBelow?: number;
      threads?: number;
      fds?: number;
      sockets?: number;
      crash?: true;
      gcHeap?: number | string;
      exception?: true | string[];
      counter?: { name: string; above?: number; below?: number };
      heapUsed?: number;
      loopDelay?: number | string;
      for?: number | string;
      cooldown?: number | string;
      count?: number;
    };
    actions: (
      | {
          dump: {
            dir: string;
            mode?: 'snapshot' | 'stop';
            filter?: number | string;
            dotnet?: DotnetDumpType;
          };
        }
      | {
          node: {
            dir: string;
            outputs?: ('heap' | 'stack' | 'report' | 'profile')[];
            profileSeconds?: number;
          };
        }
      | { history: { dir: string } }
      | { exec: string[] }
    )[];
    limit?: { count: number; window: number | string };
  }[];
}
