// npm run bench:agent — the agent against prometheus-process-exporter watching the same idle processes
// (1, 1,000 and 10,000; BENCH_AGENT_COUNTS), each scraped once a second as Prometheus would: CPU (from
// /proc/PID/stat), RSS, and the /metrics latency. Then BENCH_AGENT_CHURN_MINUTES (default 10) of churn —
// 2,000 matching processes, 100 new ones a second — with the agent's RSS and fds sampled throughout.
// Prints a table; asserts nothing.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { track } from './children.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const OUT = path.join(ROOT, 'build', 'bench');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const COUNTS = (process.env.BENCH_AGENT_COUNTS ?? '1,1000,10000').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_AGENT_SECONDS ?? 30);
const CHURN_MINUTES = Number(process.env.BENCH_AGENT_CHURN_MINUTES ?? 10);
const TICK = 100; // USER_HZ
const NAME = 'tdagentidle';
const CHURN_NAME = 'tdagentchurn';
const work = mkdtempSync(path.join(os.tmpdir(), 'tripdump-bench-agent-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function compile(source: string, out: string): void {
  mkdirSync(OUT, { recursive: true });
  const r = spawnSync('cc', ['-O2', '-pthread', '-o', out, source], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc ${source}: ${r.stderr}`);
}

/** utime + stime of a process (all its threads), in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK;
}

function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  return Number(m?.[1] ?? 0) / 1024;
}

const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
}

/** Starts a process and resolves once `ready(output)` says so. */
function launch(
  cmd: string,
  args: string[],
  ready: (out: string) => boolean,
  stdin = false,
): Promise<{ child: ChildProcess; out: () => string }> {
  const child = track(spawn(cmd, args, { stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] }));
  let out = '';
  const add = (d: Buffer) => {
    out += d.toString();
  };
  child.stdout!.on('data', add);
  child.stderr!.on('data', add);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} not ready after 120 s:\n${out}`)), 120_000);
    const check = () => {
      if (ready(out)) {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        child.stderr!.off('data', check);
        resolve({ child, out: () => out });
      }
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', (code) => reject(new Error(`${cmd} exited (${code}):\n${out}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(10_000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface Measure {
  cpuPercent: number;
  rssMiB: number;
  scrapeMs: number[];
  bytes: number;
}

/** Scrapes `url` once a second for SECONDS after a warm-up, with the CPU the process used meanwhile. */
async function measure(pid: number, url: string): Promise<Measure> {
  for (let i = 0; i < 5; i++) {
    await fetch(url).then((r) => r.text());
    await sleep(1000);
  }
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  const scrapeMs: number[] = [];
  let bytes = 0;
  for (let i = 0; i < SECONDS; i++) {
    const s = performance.now();
    bytes = (await (await fetch(url)).text()).length;
    scrapeMs.push(performance.now() - s);
    await sleep(Math.max(0, 1000 - (performance.now() - s)));
  }
  const wall = (performance.now() - t0) / 1000;
  return { cpuPercent: ((cpuSeconds(pid) - cpu0) / wall) * 100, rssMiB: rssMiB(pid), scrapeMs, bytes };
}

async function idle(count: number): Promise<ChildProcess> {
  const { child } = await launch(path.join(OUT, NAME), [String(count)], (o) => o.includes('ready\n'), true);
  return child;
}

async function runAgent(config: string): Promise<{ child: ChildProcess; url: string; out: () => string }> {
  const a = await launch(process.execPath, [CLI, 'agent', '--config', config], (o) => /agent ready/.test(o));
  const url = /metrics on (http:\/\/\S+)\/metrics/.exec(a.out())![1]!;
  return { ...a, url };
}

async function waitWatched(url: string, n: number, rule: string): Promise<void> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const s = (await (await fetch(`${url}/status`)).json()) as {
      rules: { name: string; matched: unknown[] }[];
    };
    // ≥: the spawner of the idle processes carries their name too.
    if ((s.rules.find((r) => r.name === rule)?.matched.length ?? 0) >= n) return;
    if (Date.now() > deadline) throw new Error(`the agent never watched ${n} processes`);
    await sleep(500);
  }
}

function rules(name: string, rule: string): string {
  return `metrics: 127.0.0.1:0\npoll: 1s\nrules:\n  - name: ${rule}\n    match: { comm: "${name}" }\n    trigger: { memory: 1000000 }\n    actions: [ { exec: [ "/bin/true" ] } ]\n`;
}

async function main(): Promise<void> {
  compile(path.join(ROOT, 'bench', 'idle_target.c'), path.join(OUT, 'idle_target'));
  // The idle processes carry the copy's name as their comm: the rules match them and nothing else.
  copyFileSync(path.join(OUT, 'idle_target'), path.join(OUT, NAME));
  compile(path.join(ROOT, 'test', 'fixtures', 'churn.c'), path.join(OUT, 'churn'));
  const exporterVersion =
    spawnSync('prometheus-process-exporter', ['-version'], { encoding: 'utf8' })
      .stdout?.trim()
      .split('\n')[0] ?? 'not installed';
  console.log(
    `machine: ${os.cpus()[0]?.model} x${os.cpus().length}; kernel ${os.release()}; node ${process.version}; ` +
      `peer: prometheus-process-exporter ${exporterVersion} (-gather-smaps=false -threads=false: its lightest)`,
  );
  console.log(
    `load before: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}; window ${SECONDS} s per row, scraped every 1 s\n`,
  );
  const rows: string[] = [];
  for (const n of COUNTS) {
    const targets = await idle(n);
    try {
      const config = path.join(work, `agent-${n}.yaml`);
      writeFileSync(config, rules(NAME, 'idle'));
      const agent = await runAgent(config);
      await waitWatched(agent.url, n, 'idle');
      const a = await measure(agent.child.pid!, `${agent.url}/metrics`);
      await stop(agent.child);

      let e: Measure | undefined;
      if (exporterVersion !== 'not installed') {
        const port = await freePort();
        const cfg = path.join(work, 'exporter.yml');
        writeFileSync(cfg, `process_names:\n  - comm: [${NAME}]\n`);
        const exporter = track(
          spawn(
            'prometheus-process-exporter',
            [
              '-config.path',
              cfg,
              '-web.listen-address',
              `127.0.0.1:${port}`,
              '-gather-smaps=false',
              '-threads=false',
            ],
            { stdio: 'ignore' },
          ),
        );
        for (let i = 0; i < 100; i++) {
          if (
            await fetch(`http://127.0.0.1:${port}/metrics`).then(
              (r) => r.ok,
              () => false,
            )
          )
            break;
          await sleep(100);
        }
        e = await measure(exporter.pid!, `http://127.0.0.1:${port}/metrics`);
        await stop(exporter);
      }
      const f = (x: number, d = 1) => x.toFixed(d);
      rows.push(
        `| ${n.toLocaleString('en-US')} | ${f(a.cpuPercent, 2)} | ${f(a.rssMiB)} | ${f(quantile(a.scrapeMs, 0.5))} / ${f(quantile(a.scrapeMs, 0.99))} | ${(a.bytes / 1024).toFixed(0)} | ` +
          (e
            ? `${f(e.cpuPercent, 2)} | ${f(e.rssMiB)} | ${f(quantile(e.scrapeMs, 0.5))} / ${f(quantile(e.scrapeMs, 0.99))} | ${f(a.cpuPercent / e.cpuPercent, 2)} |`
            : 'n/a | n/a | n/a | n/a |'),
      );
    } finally {
      await stop(targets);
    }
  }
  console.log(
    '| watched | agent CPU % | agent RSS MiB | agent /metrics p50 / p99 ms | KiB | exporter CPU % | exporter RSS MiB | exporter /metrics p50 / p99 ms | CPU agent ÷ exporter |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  console.log(
    `load after: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}\n`,
  );

  if (CHURN_MINUTES > 0) await churn();
}

/** 2,000 matching processes, 100 new short-lived ones a second, for CHURN_MINUTES: RSS and fds of the agent. */
async function churn(): Promise<void> {
  const config = path.join(work, 'agent-churn.yaml');
  writeFileSync(config, rules(CHURN_NAME, 'churn'));
  const agent = await runAgent(config);
  const churner = await launch(
    path.join(OUT, 'churn'),
    ['--name', CHURN_NAME, '--sleepers', '2000', '--total', '0', '--rate', '100', '--life-ms', '1000'],
    (o) => o.includes('ready\n'),
    true,
  );
  try {
    await waitWatched(agent.url, 2000, 'churn');
    const pid = agent.child.pid!;
    const cpu0 = cpuSeconds(pid);
    const samples: { t: number; rss: number; fds: number }[] = [
      { t: 0, rss: rssMiB(pid), fds: fdCount(pid) },
    ];
    churner.child.stdin!.write('go\n');
    const t0 = Date.now();
    while (Date.now() - t0 < CHURN_MINUTES * 60_000) {
      await sleep(10_000);
      await fetch(`${agent.url}/metrics`).then((r) => r.text());
      samples.push({ t: (Date.now() - t0) / 1000, rss: rssMiB(pid), fds: fdCount(pid) });
    }
    const cpu = ((cpuSeconds(pid) - cpu0) / ((Date.now() - t0) / 1000)) * 100;
    await stop(churner.child);
    // Every churned process is gone: what the agent watches and exports must be back to nothing.
    await sleep(5000);
    const m = await (await fetch(`${agent.url}/metrics`)).text();
    const left = m.split('\n').filter((l) => l.startsWith('tripdump_process_threads{')).length;
    const after = { rss: rssMiB(pid), fds: fdCount(pid) };
    const first = samples[1] ?? samples[0]!;
    const last = samples.at(-1)!;
    console.log(
      `churn: ${CHURN_MINUTES} min, 2,000 matching processes + 100 new a second (each lives up to 1 s)`,
    );
    console.log('| agent | before churn | after 10 s | max | at the end | all churn gone |');
    console.log('|---|---|---|---|---|---|');
    console.log(
      `| RSS MiB | ${samples[0]!.rss.toFixed(1)} | ${first.rss.toFixed(1)} | ${Math.max(...samples.map((s) => s.rss)).toFixed(1)} | ${last.rss.toFixed(1)} | ${after.rss.toFixed(1)} |`,
    );
    console.log(
      `| fds | ${samples[0]!.fds} | ${first.fds} | ${Math.max(...samples.map((s) => s.fds))} | ${last.fds} | ${after.fds} |`,
    );
    console.log(`agent CPU during churn: ${cpu.toFixed(2)} % of a core; process series left after: ${left}`);
    console.log(
      `RSS drift from 10 s to the end: ${(last.rss - first.rss).toFixed(1)} MiB over ${((last.t - first.t) / 60).toFixed(1)} min`,
    );
    // Whether it levels off: the RSS at each minute, and the drift over the second half.
    const atMinute = samples.filter(
      (s, i) => i === 0 || Math.floor(s.t / 60) > Math.floor(samples[i - 1]!.t / 60),
    );
    console.log(`RSS MiB by minute: ${atMinute.map((s) => s.rss.toFixed(1)).join(' ')}`);
    const half = samples.find((s) => s.t >= last.t / 2) ?? first;
    console.log(
      `RSS drift over the second half: ${(((last.rss - half.rss) / (last.t - half.t)) * 60).toFixed(2)} MiB/min`,
    );
  } finally {
    await stop(churner.child);
    await stop(agent.child);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
