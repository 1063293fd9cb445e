// `tripdump agent --config FILE`: the host-wide daemon (src/agent). `tripdump agent status`: what a running
// agent is doing, from its /status endpoint. `tripdump agent check --config FILE`: validate a rules file.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, watch } from 'node:fs';
import path from 'node:path';
import { Agent, type AgentStatus } from '../agent/agent.js';
import { ConfigError, loadConfig, parseListen } from '../agent/config.js';
import { folderProblem } from '../agent/folders.js';
import { AgentServer } from '../agent/server.js';
import { UsageError } from '../errors.js';
import { plural } from '../plural.js';
import { EXIT, interruptSignal, parseOptions } from './common.js';
import { escapeControl } from './format.js';
import { logLine } from './output.js';

export const AGENT_USAGE = `Usage: tripdump agent --config FILE [--metrics HOST:PORT]
       tripdump agent status [--config FILE | --metrics HOST:PORT] [--json]
       tripdump agent check --config FILE

Runs the rules of FILE (YAML or JSON; the schema ships as dist/agent/schema.json) on every process of the
host until SIGTERM or Ctrl-C: processes that start later and match are picked up, dumps are limited per
rule and per host. Serves Prometheus metrics on /metrics and a status document on /status, at --metrics,
else the file's metrics: address, else 127.0.0.1:9464 (loopback unless an address is given explicitly).
SIGHUP or a change of FILE reloads the rules; a bad file is refused and the running rules stay.
Under systemd (Type=notify) it reports readiness once the rules are loaded and the endpoint listens.

  --config FILE        the rules file
  --metrics HOST:PORT  where to serve /metrics and /status (overrides the file)
  --json               status: the raw status document
`;

const DEFAULT_LISTEN = { host: '127.0.0.1', port: 9464 };

export async function agentCommand(argv: string[], out: NodeJS.WriteStream): Promise<number> {
  const sub = argv[0] === 'status' || argv[0] === 'check' ? argv[0] : undefined;
  const { values, positionals } = parseOptions(sub ? argv.slice(1) : argv, {
    config: { type: 'string' },
    metrics: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    out.write(AGENT_USAGE);
    return EXIT.ok;
  }
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`, positionals[0]);
  const metrics = values.metrics === undefined ? undefined : parseListen(values.metrics);
  if (sub === 'status') return status(values.config, metrics, values.json === true, out);
  if (values.config === undefined) throw new UsageError('--config FILE is required', '--config');
  if (sub === 'check') {
    const c = loadConfig(values.config);
    // A folder that cannot be used here: a running agent would refuse that rule's firings.
    const folders = c.folders.flatMap((f) => {
      const message = folderProblem(f.dir);
      return message ? [{ line: f.line, column: f.column, message: `rule ${f.rule}: ${message}` }] : [];
    });
    if (folders.length) throw new ConfigError(c.file, folders);
    out.write(`${c.file}: ${plural(c.rules.length, 'rule')} (${c.rules.map((r) => r.name).join(', ')})\n`);
    return EXIT.ok;
  }
  if (values.json) throw new UsageError('--json is for agent status', '--json');
  return run(values.config, metrics, out);
}

async function run(
  configPath: string,
  metrics: { host: string; port: number } | undefined,
  out: NodeJS.WriteStream,
): Promise<number> {
  const signal = interruptSignal();
  const log = (level: 'info' | 'warn' | 'error', message: string) =>
    out.write(
      logLine(level === 'info' ? 'INFO' : level === 'warn' ? 'WARN' : 'ERROR', escapeControl(message)),
    );
  // A bad file is a usage error here: nothing has started.
  const agent = new Agent({ configPath, ...(metrics ? { metrics } : {}), signal, log });
  const listen = agent.listen ?? DEFAULT_LISTEN;
  const server = new AgentServer({
    metrics: () => agent.exposition(),
    status: () => agent.status(),
  });
  const address = await server.listen(listen.host, listen.port);
  const reloads = watchForReloads(configPath, () => agent.reload(), signal);
  const running = agent.run();
  log(
    'info',
    `agent ready: ${plural(agent.config.rules.length, 'rule')} from ${agent.config.file}; metrics on http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/metrics`,
  );
  notifySystemd('READY=1');
  try {
    await running;
  } catch (e) {
    log('error', `the agent failed: ${(e as Error).message}`);
    throw e;
  } finally {
    reloads();
    await server.close();
  }
  log('info', 'agent stopped');
  return EXIT.ok;
}

/**
 * Reloads on SIGHUP and when the rules file's content changes. The folder is watched, not the file: editors
 * replace files by rename, and Kubernetes swaps a ConfigMap's files through a symlink.
 */
function watchForReloads(configPath: string, reload: () => unknown, signal: AbortSignal): () => void {
  const digest = () => {
    try {
      return createHash('sha256').update(readFileSync(configPath)).digest('hex');
    } catch {
      return '';
    }
  };
  let last = digest();
  let timer: NodeJS.Timeout | undefined;
  const maybe = () => {
    const now = digest();
    if (now === last) return;
    last = now;
    reload();
  };
  const onHup = () => {
    last = digest();
    reload();
  };
  process.on('SIGHUP', onHup);
  const watcher = watch(path.dirname(path.resolve(configPath)), () => {
    // A burst of events per save: look once it is over.
    clearTimeout(timer);
    timer = setTimeout(maybe, 200);
  });
  const stop = () => {
    process.off('SIGHUP', onHup);
    clearTimeout(timer);
    watcher.close();
  };
  signal.addEventListener('abort', stop, { once: true });
  return stop;
}

/** sd_notify through systemd-notify (Node has no AF_UNIX datagrams); nothing outside systemd. */
function notifySystemd(state: string): void {
  if (!process.env.NOTIFY_SOCKET) return;
  const child = spawn('systemd-notify', [`--pid=${process.pid}`, state], { stdio: 'ignore' });
  child.on('error', () => {});
}

async function status(
  configPath: string | undefined,
  metrics: { host: string; port: number } | undefined,
  json: boolean,
  out: NodeJS.WriteStream,
): Promise<number> {
  const where = metrics ?? (configPath ? loadConfig(configPath).metrics : undefined) ?? DEFAULT_LISTEN;
  const host = where.host.includes(':') ? `[${where.host}]` : where.host;
  let s: AgentStatus;
  try {
    const res = await fetch(`http://${host}:${where.port}/status`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    s = (await res.json()) as AgentStatus;
  } catch (e) {
    process.stderr.write(
      `tripdump: no agent answers at http://${host}:${where.port}/status (${(e as Error).cause ?? (e as Error).message})\n`,
    );
    return EXIT.failure;
  }
  if (json) {
    out.write(`${JSON.stringify(s, null, 2)}\n`);
    return EXIT.ok;
  }
  const e = escapeControl;
  out.write(`Rules from ${e(s.config.file)}, loaded ${s.config.loadedAt}\n`);
  if (s.config.lastReload && !s.config.lastReload.ok)
    out.write(
      `Last reload refused (${s.config.lastReload.time}):\n${(s.config.lastReload.error ?? '')
        .split('\n')
        .map((l) => `  ${e(l)}\n`)
        .join('')}`,
    );
  out.write(`Processes: ${s.processes.watched} watched of ${s.processes.host} on the host\n`);
  out.write(
    `Dump bytes in the last ${s.limits.windowMs / 1000} s: ${s.limits.bytesInWindow}${s.limits.bytesLimit !== undefined ? ` of ${s.limits.bytesLimit}` : ''}\n\n`,
  );
  for (const r of s.rules) {
    const shown = r.matched.slice(0, 10).map((m) => `${e(m.name)} (${m.pid})`);
    const more = r.matched.length > 10 ? `, … ${r.matched.length - 10} more` : '';
    out.write(
      `${e(r.name)}: ${r.matched.length} matched${shown.length ? `: ${shown.join(', ')}${more}` : ''}; ${r.firings} fired, ${r.suppressed} suppressed, ${r.errors} failed\n`,
    );
    for (const p of r.problems)
      out.write(
        `  problem: ${p.pid !== undefined ? `${p.kind} trigger on ${e(p.name ?? '')} (${p.pid}): ` : ''}${e(p.message)}${p.retryAt ? ` (attempt ${p.attempts}, next at ${p.retryAt})` : ''}\n`,
      );
  }
  if (s.recent.length) out.write('\nRecent:\n');
  for (const f of s.recent.slice(-20))
    out.write(
      `  ${f.time} ${e(f.rule)} ${e(f.name)} (${f.pid}): ${e(f.reason)}${f.suppressed ? ` — suppressed: ${e(f.suppressed)}` : ''}${f.files.length ? ` → ${f.files.map(e).join(', ')}` : ''}${f.errors.length ? ` — ${f.errors.map(e).join('; ')}` : ''}\n`,
    );
  return EXIT.ok;
}
