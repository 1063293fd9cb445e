// `tripdump agent` end to end: real processes matched by rules, dumps and their limits, reloads, the
// /metrics and /status endpoints scraped by a real Prometheus, crash rules fed by the installed crash
// handler, systemd readiness.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import type { AgentStatus } from '../../src/agent/agent.js';
import { install, uninstall } from '../../src/crash/install.js';
import { dotnetAvailable, startDotnetTarget } from '../fixtures/dotnet/target.js';
import { withCorePattern } from '../helpers/host-state.js';
import { procStat, spawnTarget, trackProcesses, waitFor } from '../helpers/processes.js';
import { hasTool, isRoot, needsRoot } from '../helpers/requirements.js';
import { listeningSockets, spawnNodeTarget } from '../native/node-target.js';
import { cli, isCore, runSync, spawnCopy, start, uniqueFixture } from './run-cli.js';

const track = trackProcesses();
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-agent-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

interface RunningAgent {
  child: ChildProcess;
  url: string;
  out: () => string;
  status(): Promise<AgentStatus>;
  metrics(): Promise<string>;
  exit: Promise<number | null>;
}

/** Writes a rules file as an editor would: a new file renamed over the old one. */
function writeRules(file: string, text: string): void {
  writeFileSync(`${file}.new`, text);
  renameSync(`${file}.new`, file);
}

async function startAgent(config: string, env: NodeJS.ProcessEnv = process.env): Promise<RunningAgent> {
  const run = start(['agent', '--config', config], { env });
  track(run.child);
  const url = await waitFor(
    () =>
      /agent ready: .* metrics on (http:\/\/\S+)\/metrics/.exec(run.out())?.[1] ??
      (run.child.exitCode !== null && 'exited'),
    20_000,
    'the agent to be ready',
  );
  if (url === 'exited') throw new Error(`the agent exited:\n${run.out()}\n${run.err()}`);
  // An agent that died is the failure to report, with what it said, not the refused connection.
  const get = async (what: string) => {
    if (run.child.exitCode !== null || run.child.signalCode !== null)
      throw new Error(
        `the agent exited (${run.child.exitCode ?? run.child.signalCode}):\n${run.out()}\n${run.err()}`,
      );
    return fetch(`${url}/${what}`);
  };
  return {
    child: run.child,
    url,
    out: run.out,
    exit: run.exit,
    status: async () => (await (await get('status')).json()) as AgentStatus,
    metrics: async () => (await get('metrics')).text(),
  };
}

/** The value of one series in an exposition, or undefined. */
function series(
  text: string,
  name: string,
  labels: Record<string, string | number> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

/** The fds of `pid` open on files of /proc/TARGET, as fd → path. */
function procFds(pid: number, target: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const to = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (to.startsWith(`/proc/${target}/`)) out.set(fd, to);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

describe('tripdump agent', () => {
  it('picks up a process started after it, dumps it once the rule holds, and drops it when it exits', async () => {
    const copy = uniqueFixture('workload');
    const dumps = path.join(dir, 'dumps');
    mkdirSync(dumps);
    const config = path.join(dir, 'agent.yaml');
    writeRules(
      config,
      `metrics: 127.0.0.1:0
poll: 200ms
rules:
  - name: big-${copy.name}
    match: { comm: "${copy.name}" }
    trigger: { memory: 40, count: 1 }
    actions: [ { dump: { dir: ${dumps} } } ]
`,
    );
    const agent = await startAgent(config);
    const t = track(await spawnCopy(copy, ['--delay', '1500', '--alloc', '64']));
    // Below the threshold first: its series are there, no dump.
    const rss = await waitFor(
      async () =>
        series(await agent.metrics(), 'tripdump_process_resident_memory_bytes', {
          pid: t.pid,
          comm: copy.name,
        }),
      10_000,
      'its series',
    );
    expect(rss).toBeLessThan(40 * 2 ** 20);
    expect((await agent.status()).rules[0]!.matched.map((x) => x.pid)).toEqual([t.pid]);
    expect(readdirSync(dumps)).toEqual([]);
    await waitFor(() => readdirSync(dumps).length === 1, 20_000, 'the dump');
    const [core] = readdirSync(dumps);
    expect(core).toMatch(new RegExp(`^${copy.name}_commit_\\d{6}_\\d{6}\\.${t.pid}$`));
    expect(isCore(path.join(dumps, core!))).toBe(true);
    // The file appears (renamed into place) just before the action reports: wait for the count.
    const m = await waitFor(
      async () => {
        const text = await agent.metrics();
        return series(text, 'tripdump_agent_dumps_written_total', { rule: `big-${copy.name}` }) === 1 && text;
      },
      10_000,
      'the dump counted',
    );
    expect(
      series(m, 'tripdump_agent_triggers_fired_total', { rule: `big-${copy.name}`, trigger: 'commit' }),
    ).toBe(1);
    expect(series(m, 'tripdump_agent_written_bytes_total', { rule: `big-${copy.name}` })).toBeGreaterThan(
      40 * 2 ** 20,
    );
    const s = await agent.status();
    expect(s.recent.at(-1)).toMatchObject({
      pid: t.pid,
      trigger: 'commit',
      files: [path.join(dumps, core!)],
    });
    // The target runs on, untouched; once it exits, nothing of it is left in the exposition.
    expect(procStat(t.pid).state).not.toBe('T');
    await t.kill();
    await waitFor(
      async () => series(await agent.metrics(), 'tripdump_process_threads', { pid: t.pid }) === undefined,
      5_000,
      'its series to go',
    );
    expect((await agent.status()).rules[0]!.matched).toEqual([]);
    // SIGTERM: stops cleanly.
    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
    expect(agent.out()).toContain('agent stopped');
  });

  it('under churn (2,000 processes coming and going) leaves no series, no watched process and no fd behind', async () => {
    const name = `tdagc${process.pid % 100_000}`.slice(0, 15);
    const config = path.join(dir, 'agent.yaml');
    writeRules(
      config,
      `metrics: 127.0.0.1:0\npoll: 100ms\nrules:\n  - name: churn\n    match: { comm: "${name}" }\n    trigger: { memory: 1000000 }\n    actions: [ { exec: [ "/bin/true" ] } ]\n`,
    );
    const agent = await startAgent(config);
    const churn = track(
      await spawnTarget(
        'churn',
        ['--name', name, '--sleepers', '20', '--total', '2000', '--rate', '200', '--life-ms', '100'],
        { stdin: true },
      ),
    );
    const settled = async () => {
      const m = await agent.metrics();
      const threads = m
        .split('\n')
        .filter((l) => l.startsWith('tripdump_process_threads{') && l.includes(`comm="${name}"`));
      return (
        series(m, 'tripdump_agent_processes_watched', { rule: 'churn' }) === 20 &&
        threads.length === 20 &&
        (await agent.status()).rules[0]!.matched.length === 20
      );
    };
    await waitFor(settled, 15_000, 'the 20 sleepers', 100);
    // The files of processes the agent holds open (/proc/PID/...): what a process that went away would
    // leave behind. (Sockets and libuv's own pipes and eventfds come and go with the test's requests.)
    const files = () =>
      readdirSync(`/proc/${agent.child.pid}/fd`).flatMap((fd) => {
        try {
          const to = readlinkSync(`/proc/${agent.child.pid}/fd/${fd}`);
          return /^\/proc\/\d+\//.test(to) ? [to] : [];
        } catch {
          return [];
        }
      });
    const fds = files();
    churn.child.stdin!.write('go\n');
    await waitFor(() => churn.lines.includes('done'), 120_000, 'the churn to end', 100);
    // Back to the sleepers alone: in the exposition, in the status, and in what the agent holds open.
    await waitFor(settled, 15_000, 'the agent to settle', 100);
    // None of a process that is gone. (The host-wide sweep holds every live process's stat, tests running
    // beside this one included: those come and go with their processes.)
    const gone = () => files().filter((f) => !existsSync(`/proc/${f.split('/')[2]}`));
    await waitFor(() => gone().length === 0, 5_000, 'no fd of a gone process');
    expect(files().length).toBeLessThan(fds.length + 200); // not one per churned process (2,000)
    const m = await agent.metrics();
    expect(series(m, 'tripdump_agent_sweep_duration_seconds_count', { of: 'targets' })).toBeGreaterThan(10);
    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
  });

  it('keeps the free-disk floor: no dump on a nearly full filesystem, counted as suppressed', async () => {
    if (!needsRoot('mounting a small tmpfs')) return;
    const copy = uniqueFixture('workload');
    const small = path.join(dir, 'small');
    mkdirSync(small);
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', small]).status).toBe(0);
    try {
      const config = path.join(dir, 'agent.yaml');
      writeRules(
        config,
        `metrics: 127.0.0.1:0
poll: 200ms
limits: { minFree: 50% }
rules:
  - name: floor
    match: { comm: "${copy.name}" }
    trigger: { memory: 10, cooldown: 1s }
    actions: [ { dump: { dir: ${small} } } ]
`,
      );
      const agent = await startAgent(config);
      // 20 MiB resident against 32 MiB with half of it kept free: the dump would pass the floor.
      track(await spawnCopy(copy, ['--alloc', '20']));
      await waitFor(
        async () =>
          series(await agent.metrics(), 'tripdump_agent_actions_suppressed_total', {
            rule: 'floor',
            reason: 'disk-floor',
          }),
        15_000,
        'a suppressed firing',
      );
      expect(readdirSync(small)).toEqual([]);
      const s = await agent.status();
      expect(s.recent.at(-1)?.suppressed).toMatch(new RegExp(`${small} has \\d+ bytes free`));
      agent.child.kill('SIGTERM');
      expect(await agent.exit).toBe(0);
    } finally {
      spawnSync('umount', [small]);
    }
  });

  it('reload: a broken file keeps the running rules; a good one applies without reopening what it watches', async () => {
    const a = uniqueFixture('workload');
    const b = uniqueFixture('workload');
    const config = path.join(dir, 'agent.yaml');
    const ruleA = `  - name: a
    match: { comm: "${a.name}" }
    trigger: { threads: 1000 }
    actions: [ { exec: [ "/bin/true" ] } ]
`;
    writeRules(config, `metrics: 127.0.0.1:0\npoll: 200ms\nrules:\n${ruleA}`);
    const agent = await startAgent(config);
    const ta = track(await spawnCopy(a));
    const tb = track(await spawnCopy(b));
    await waitFor(async () => (await agent.status()).rules[0]!.matched.length === 1, 10_000, 'a to match');
    const before = procFds(agent.child.pid!, ta.pid);
    expect([...before.values()]).toContain(`/proc/${ta.pid}/stat`);

    // Broken (a typo in a key, on line 6): refused with file and line, the running rules go on.
    writeRules(config, `metrics: 127.0.0.1:0\npoll: 200ms\nrules:\n${ruleA.replace('trigger:', 'triger:')}`);
    const refused = await waitFor(
      async () => {
        const s = await agent.status();
        return s.config.lastReload?.ok === false && s;
      },
      10_000,
      'the reload to be refused',
    );
    expect(refused.config.lastReload?.error).toContain(`${config}:6:5: unknown key 'triger'`);
    expect(refused.rules.map((r) => r.name)).toEqual(['a']);
    expect(refused.rules[0]!.matched.map((x) => x.pid)).toEqual([ta.pid]);
    const m = await agent.metrics();
    expect(series(m, 'tripdump_agent_config_last_reload_successful')).toBe(0);
    expect(series(m, 'tripdump_agent_config_reloads_total', { result: 'refused' })).toBe(1);
    expect(agent.out()).toMatch(/rules not reloaded, the running ones stay/);

    // Good, by SIGHUP this time: rule a as it was, rule b added.
    writeFileSync(
      config,
      `metrics: 127.0.0.1:0\npoll: 200ms\nrules:\n${ruleA}  - name: b\n    match: { comm: "${b.name}" }\n    trigger: { threads: 1000 }\n    actions: [ { exec: [ "/bin/true" ] } ]\n`,
    );
    agent.child.kill('SIGHUP');
    const applied = await waitFor(
      async () => {
        const s = await agent.status();
        return s.rules.length === 2 && s.rules[1]!.matched.length === 1 && s;
      },
      10_000,
      'rule b to match',
    );
    expect(applied.config.lastReload?.ok).toBe(true);
    expect(applied.rules[0]!.matched.map((x) => x.pid)).toEqual([ta.pid]);
    expect(applied.rules[1]!.matched.map((x) => x.pid)).toEqual([tb.pid]);
    // The watched process's /proc files were not opened again: the same fds on the same files.
    expect(procFds(agent.child.pid!, ta.pid)).toEqual(before);
    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
  });

  it('is scraped by a real Prometheus, and promtool accepts the exposition', async () => {
    if (!hasTool('prometheus', 'prometheus') || !hasTool('promtool', 'prometheus')) return;
    const copy = uniqueFixture('workload');
    const config = path.join(dir, 'agent.yaml');
    writeRules(
      config,
      `metrics: 127.0.0.1:0\npoll: 200ms\nrules:\n  - name: scraped\n    match: { comm: "${copy.name}" }\n    trigger: { threads: 1000 }\n    actions: [ { exec: [ "/bin/true" ] } ]\n`,
    );
    const agent = await startAgent(config);
    const t = track(await spawnCopy(copy, ['--alloc', '8']));
    await waitFor(
      async () => series(await agent.metrics(), 'tripdump_process_threads', { pid: t.pid }) === 1,
      10_000,
      'its series',
    );
    const body = await agent.metrics();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);

    const target = new URL(agent.url).host;
    const promConfig = path.join(dir, 'prometheus.yml');
    writeFileSync(
      promConfig,
      `global: { scrape_interval: 1s, evaluation_interval: 1s }\nscrape_configs:\n  - job_name: tripdump\n    static_configs: [ { targets: ['${target}'] } ]\n`,
    );
    const prom = spawn(
      'prometheus',
      [
        `--config.file=${promConfig}`,
        `--storage.tsdb.path=${path.join(dir, 'tsdb')}`,
        '--web.listen-address=127.0.0.1:0',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    track(prom);
    let log = '';
    prom.stderr.on('data', (d: Buffer) => {
      log += d.toString();
    });
    // Prometheus logs the address it listens on; port 0 is resolved in that line.
    const api = await waitFor(
      () => /Listening on.*address=(127\.0\.0\.1:\d+)/.exec(log)?.[1],
      30_000,
      'prometheus to listen',
    );
    await waitFor(
      async () => (await fetch(`http://${api}/-/ready`).catch(() => undefined))?.ok,
      30_000,
      'prometheus to be ready',
      200,
    );
    const query = async (q: string) => {
      const r = (await (await fetch(`http://${api}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as {
        data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      return r.data.result;
    };
    const rss = await waitFor(
      async () => {
        const r = await query(`tripdump_process_resident_memory_bytes{pid="${t.pid}"}`);
        return r.length ? r : undefined;
      },
      30_000,
      'prometheus to have scraped the process',
      500,
    );
    expect(rss[0]!.metric).toMatchObject({ comm: copy.name, rule: 'scraped', job: 'tripdump' });
    expect(Number(rss[0]!.value[1])).toBeGreaterThan(8 * 2 ** 20);
    const host = await query('tripdump_agent_host_processes');
    expect(Number(host[0]!.value[1])).toBeGreaterThan(1);
    const up = await query(`up{instance="${target}"}`);
    expect(up[0]!.value[1]).toBe('1');
    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
  });

  it('crash rules: in a crash loop of 50, exactly `limit.count` run their actions, the rest are suppressed', async () => {
    if (!needsRoot('the crash handler in core_pattern')) return;
    const copy = uniqueFixture('crasher');
    await withCorePattern(async () => {
      const socket = path.join(dir, 'crash.sock');
      const handlerConfig = path.join(dir, 'handler.conf');
      const ran = path.join(dir, 'ran.txt');
      const config = path.join(dir, 'agent.yaml');
      writeRules(
        config,
        `metrics: 127.0.0.1:0
crashSocket: ${socket}
rules:
  - name: crashloop
    match: { comm: "${copy.name}" }
    trigger: { crash: true }
    actions: [ { exec: [ "/bin/sh", "-c", "echo $0 >> ${ran}", "{pid}" ] } ]
    limit: { count: 3, window: 1h }
`,
      );
      const agent = await startAgent(config);
      try {
        install({ configPath: handlerConfig, dir: path.join(dir, 'cores'), socket, maxUse: 2 ** 30 });
        for (let i = 0; i < 50; i++) {
          const c = spawn('/bin/sh', ['-c', `ulimit -c unlimited; exec '${copy.file}' 0 0`], {
            stdio: 'ignore',
          });
          track(c);
          await new Promise((r) => c.once('exit', r));
        }
        await waitFor(
          async () => {
            const m = await agent.metrics();
            const ok =
              series(m, 'tripdump_agent_triggers_fired_total', { rule: 'crashloop', trigger: 'crash' }) ?? 0;
            const held =
              series(m, 'tripdump_agent_actions_suppressed_total', {
                rule: 'crashloop',
                reason: 'rule-limit',
              }) ?? 0;
            return ok + held === 50;
          },
          60_000,
          'every crash to be seen',
          200,
        );
        const m = await agent.metrics();
        expect(
          series(m, 'tripdump_agent_triggers_fired_total', { rule: 'crashloop', trigger: 'crash' }),
        ).toBe(3);
        expect(
          series(m, 'tripdump_agent_actions_suppressed_total', { rule: 'crashloop', reason: 'rule-limit' }),
        ).toBe(47);
        await waitFor(
          () => readFileSync(ran, 'utf8').trim().split('\n').length === 3,
          10_000,
          'three actions',
        );
        expect(readFileSync(ran, 'utf8').trim().split('\n')).toHaveLength(3);
      } finally {
        try {
          uninstall({ configPath: handlerConfig, force: true });
        } catch {
          // withCorePattern restores the settings byte for byte in any case
        }
        agent.child.kill('SIGTERM');
        await agent.exit;
      }
    });
  });

  it('tells systemd it is ready once the rules are loaded, and its unit file verifies', async () => {
    if (!hasTool('systemd-notify', 'systemd') || !hasTool('python3', 'python3')) return;
    const notify = path.join(dir, 'notify.sock');
    const got = path.join(dir, 'notified.txt');
    // A NOTIFY_SOCKET receiver, as systemd is: one datagram.
    const receiver = spawn(
      'python3',
      [
        '-c',
        `import socket,sys
s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); print('listening', flush=True)
open(sys.argv[2],'wb').write(s.recv(4096))`,
        notify,
        got,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    track(receiver);
    await new Promise((r) => receiver.stdout.once('data', r));
    const config = path.join(dir, 'agent.yaml');
    writeRules(
      config,
      'metrics: 127.0.0.1:0\nrules:\n  - name: x\n    match: { comm: "nothing-here" }\n    trigger: { cpu: 90 }\n    actions: [ { exec: [ "/bin/true" ] } ]\n',
    );
    const agent = await startAgent(config, { ...process.env, NOTIFY_SOCKET: notify });
    await new Promise((r) => receiver.once('exit', r));
    expect(readFileSync(got, 'utf8')).toContain('READY=1');
    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);

    // The unit shipped in deploy/, pointed at this checkout's CLI.
    const unit = path.join(dir, 'tripdump-agent.service');
    copyFileSync(path.resolve(import.meta.dirname, '../../deploy/tripdump-agent.service'), unit);
    writeFileSync(
      unit,
      readFileSync(unit, 'utf8').replace('/usr/bin/tripdump', `${process.execPath} ${cli}`),
    );
    const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    expect(`${verify.stdout}${verify.stderr}`).toBe('');
    expect(verify.status).toBe(0);
  });

  it('runtime rules: a Node process started later is matched by runtime, its heap trigger writes a heap snapshot; a shell with the same command line is not', async () => {
    // A Node flag no other test uses marks this test's target (other tests' Node targets are not ours).
    const marker = `--max-semi-space-size=${16 + Math.floor(Math.random() * 40)}`;
    const out = path.join(dir, 'node');
    mkdirSync(out);
    const config = path.join(dir, 'agent.yaml');
    writeRules(
      config,
      `metrics: 127.0.0.1:0
poll: 200ms
rules:
  - name: node-heap
    match: { runtime: node, cmdline: "*${marker}*" }
    trigger: { heapUsed: 40, count: 1 }
    actions: [ { node: { dir: ${out} } } ]
`,
    );
    const agent = await startAgent(config);
    const shell = track(spawn('sh', ['-c', 'exec sleep 60', marker], { stdio: 'ignore' }));
    const t = track(await spawnNodeTarget({ nodeArgs: [marker] }));
    await waitFor(
      async () => (await agent.status()).rules[0]!.matched.some((x) => x.pid === t.pid),
      10_000,
      'the Node target matched',
    );
    expect((await agent.status()).rules[0]!.matched.map((x) => x.pid)).toEqual([t.pid]);
    expect(readdirSync(out)).toEqual([]);
    // The heap passes the threshold while it grows; the snapshot may start before "grown" is printed.
    t.command('grow 60');
    const written = () => readdirSync(out).filter((f) => !f.startsWith('.'));
    await waitFor(() => written().length === 1, 60_000, 'the heap snapshot');
    const [file] = written();
    expect(file).toMatch(new RegExp(`^node_heapused_\\d{6}_\\d{6}\\.${t.pid}\\.heapsnapshot$`));
    const snapshot = JSON.parse(readFileSync(path.join(out, file!), 'utf8'));
    expect(snapshot.strings).toContain('TripdumpFixtureLeak');
    // Its count reached, the target is let go: the inspector closes, the target runs on.
    await waitFor(() => listeningSockets(t.pid).length === 0, 30_000, 'the inspector closed');
    await t.beatsAfter(2);
    const m = await agent.metrics();
    expect(series(m, 'tripdump_agent_triggers_fired_total', { rule: 'node-heap', trigger: 'heapused' })).toBe(
      1,
    );
    expect(procStat(shell.pid!)).toBeDefined();
  });

  it('agent check: an alias bomb, an oversized file and several problems are refused with exit 2, file:line:col, one per line', () => {
    const fixtures = path.resolve(import.meta.dirname, '../fixtures/agent');
    const bomb = runSync(['agent', 'check', '--config', path.join(fixtures, 'alias-bomb.yaml')]);
    expect(bomb.code).toBe(2);
    expect(bomb.stderr).toMatch(
      /^tripdump: \S+alias-bomb\.yaml:3:8: the aliases expand to more than 100 nodes/,
    );
    expect(bomb.stderr).not.toMatch(/ReferenceError|\n +at /);
    const big = path.join(dir, 'big.yaml');
    writeFileSync(big, `rules: []\n${'#'.repeat(7 * 2 ** 20)}\n`);
    const refused = runSync(['agent', 'check', '--config', big]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      new RegExp(
        `^tripdump: ${big}: 7340043 bytes \\(7\\.0 MiB\\) is more than a rules file may be: at most 1048576 bytes \\(1 MiB\\)\n`,
      ),
    );
    const several = path.join(fixtures, 'semantic-errors.yaml');
    const lines = runSync(['agent', 'check', '--config', several]).stderr.split('\n');
    expect(lines.slice(0, 3)).toEqual([
      `tripdump: ${several}:6:25: cpu and cpuBelow contradict each other: give one`,
      `tripdump: ${several}:8:5: a rule named 'twice' is defined twice`,
      `tripdump: ${several}:10:5: the trigger needs a condition (cpu, memory, threads, fds, sockets, crash…)`,
    ]);
    expect(lines.join('\n')).not.toContain('\\x0a');
  });

  it("one rule's unusable folder or command is that rule's error: check names it, the others run, /metrics answers, SIGTERM stops it", async () => {
    const copy = uniqueFixture('workload');
    const marker = `--max-semi-space-size=${16 + Math.floor(Math.random() * 40)}`;
    const ran = path.join(dir, 'ran.txt');
    const missing = path.join(dir, 'missing');
    const aFile = path.join(dir, 'a-file');
    writeFileSync(aFile, '');
    const later = path.join(dir, 'later');
    mkdirSync(later);
    // A folder the agent cannot write to: a read-only mount as root (root writes anywhere else), a folder
    // without write permission otherwise.
    const closed = mkdtempSync(path.join(tmpdir(), 'tripdump-agent-ro-'));
    const mounted =
      isRoot && spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', closed]).status === 0;
    if (!mounted) chmodSync(closed, 0o500);
    // Whatever ends the test (a timeout too): unmounted, then removed.
    onTestFinished(() => {
      if (mounted) spawnSync('umount', [closed]);
      rmSync(closed, { recursive: true, force: true });
    });
    const rule = (name: string, action: string, match = `comm: "${copy.name}"`) =>
      `  - name: ${name}\n    match: { ${match} }\n    trigger: { memory: 1, cooldown: 1s }\n    actions: [ ${action} ]\n`;
    const text = `metrics: 127.0.0.1:0
poll: 200ms
rules:
${rule('good', `{ exec: [ "/bin/sh", "-c", "echo x >> ${ran}" ] }`)}${rule('missing', `{ dump: { dir: ${missing} } }`)}${rule('file', `{ dump: { dir: ${aFile} } }`)}${rule('closed', `{ dump: { dir: ${closed} } }`)}${rule('later', `{ history: { dir: ${later} } }`)}${rule('nocommand', '{ exec: [ "/nonexistent/command" ] }')}  - name: node
    match: { runtime: node, cmdline: "*${marker}*" }
    trigger: { heapUsed: 100000 }
    actions: [ { node: { dir: ${dir} } } ]
`;
    const config = path.join(dir, 'agent.yaml');
    writeRules(config, text);
    // Where the file names each folder: line and column of its key.
    const place = (value: string) => {
      const lines = text.split('\n');
      const line = lines.findIndex((l) => l.includes(`dir: ${value} `));
      return `${config}:${line + 1}:${lines[line]!.indexOf(`dir: ${value}`) + 1}`;
    };

    // agent check: every unusable folder, with its place; exit 2.
    const check = runSync(['agent', 'check', '--config', config]);
    expect(check.code, check.stderr).toBe(2);
    expect(check.stderr).toContain(`tripdump: ${place(missing)}: rule missing: ${missing} does not exist\n`);
    expect(check.stderr).toContain(`tripdump: ${place(aFile)}: rule file: ${aFile} is not a folder\n`);
    expect(check.stderr).toMatch(
      new RegExp(
        `tripdump: ${place(closed)}: rule closed: ${closed} is (on a read-only filesystem|not writable by the agent)`,
      ),
    );
    expect(check.stderr).not.toContain('\\x0a');

    const agent = await startAgent(config);
    expect(agent.out()).toContain(`${place(missing)}: rule missing: ${missing} does not exist`);
    // A Node process watched by another rule: its inspector session is what kept a failed agent alive.
    const node = track(await spawnNodeTarget({ nodeArgs: [marker] }));
    const t = track(await spawnCopy(copy, ['--alloc', '4']));
    const byName = (s: AgentStatus) => new Map(s.rules.map((r) => [r.name, r]));
    const s = await waitFor(
      async () => {
        const st = await agent.status();
        const r = byName(st);
        return (
          ['missing', 'file', 'closed', 'nocommand'].every((n) => r.get(n)!.errors >= 1) &&
          r.get('later')!.firings >= 1 &&
          r.get('node')!.matched.some((m) => m.pid === node.pid) &&
          existsSync(ran) &&
          st
        );
      },
      30_000,
      "every rule's firing",
      100,
    ).catch(async (e) => {
      throw new Error(
        `${(e as Error).message}: ${JSON.stringify((await agent.status()).rules)}\n${agent.out()}`,
      );
    });
    const r = byName(s);
    expect(r.get('missing')!.problems).toEqual([{ kind: 'folder', message: `${missing} does not exist` }]);
    expect(r.get('file')!.problems).toEqual([{ kind: 'folder', message: `${aFile} is not a folder` }]);
    expect(r.get('closed')!.problems).toHaveLength(1);
    expect(r.get('good')!.problems).toEqual([]);
    expect(r.get('missing')!.firings).toBe(0); // refused: no action ran
    expect(s.recent.find((f) => f.rule === 'missing')?.errors).toEqual([
      `${missing} does not exist: no action run`,
    ]);
    expect(readdirSync(dir).filter((f) => f.startsWith('.') || f.includes('_commit_'))).toEqual([]);
    let m = await agent.metrics();
    expect(
      series(m, 'tripdump_agent_rule_errors_total', { rule: 'missing', kind: 'folder' }),
    ).toBeGreaterThan(0);
    expect(
      series(m, 'tripdump_agent_rule_errors_total', { rule: 'nocommand', kind: 'exec' }),
    ).toBeGreaterThan(0);
    expect(series(m, 'tripdump_agent_rule_problems', { rule: 'missing' })).toBe(1);
    expect(series(m, 'tripdump_agent_rule_problems', { rule: 'good' })).toBe(0);
    for (const rule of s.rules)
      expect(series(m, 'tripdump_agent_processes_watched', { rule: rule.name }), rule.name).toBe(
        rule.matched.length,
      );

    // A folder removed while the agent runs: the next firing is the rule's error, as is the folder.
    await waitFor(() => readdirSync(later).length > 0, 10_000, 'a history in the folder');
    rmSync(later, { recursive: true });
    const errorsBefore = byName(await agent.status()).get('later')!.errors;
    await waitFor(
      async () => byName(await agent.status()).get('later')!.errors > errorsBefore,
      10_000,
      'a firing into the removed folder',
      100,
    );
    expect(byName(await agent.status()).get('later')!.problems).toEqual([
      { kind: 'folder', message: `${later} does not exist` },
    ]);

    // A reload that brings a missing folder: applied (the rule's error, not the agent's), said with its place.
    const gone = path.join(dir, 'gone');
    const next = text.replace(`dir: ${missing} `, `dir: ${gone} `);
    writeFileSync(config, next);
    agent.child.kill('SIGHUP');
    await waitFor(
      async () =>
        byName(await agent.status()).get('missing')!.problems[0]?.message === `${gone} does not exist`,
      10_000,
      'the reload',
      100,
    );
    expect((await agent.status()).config.lastReload?.ok).toBe(true);
    const lines = next.split('\n');
    const at = lines.findIndex((l) => l.includes(`dir: ${gone} `));
    expect(agent.out()).toContain(
      `${config}:${at + 1}:${lines[at]!.indexOf(`dir: ${gone}`) + 1}: rule missing: ${gone} does not exist`,
    );

    // The good rule ran all along, the endpoint answers, SIGTERM ends the agent and lets the Node target go.
    const goodRuns = readFileSync(ran, 'utf8').split('\n').length;
    await waitFor(
      () => readFileSync(ran, 'utf8').split('\n').length > goodRuns,
      10_000,
      'the good rule again',
    );
    m = await agent.metrics();
    expect(series(m, 'tripdump_agent_host_processes')).toBeGreaterThan(1);
    // At once: a command that could not be started holds nothing (it held the agent for its timeout, 60 s).
    agent.child.kill('SIGTERM');
    await waitFor(() => agent.child.exitCode !== null, 20_000, 'the agent to stop', 50);
    expect(await agent.exit).toBe(0);
    await waitFor(() => listeningSockets(node.pid).length === 0, 10_000, 'the inspector closed');
    expect(procStat(t.pid).state).not.toBe('T');
  }, 120_000);

  it('a cmdline glob matches across a line break inside an argument: a process cannot hide from a rule by it', async () => {
    const marker = `td${process.pid}x${Math.random().toString(36).slice(2, 8)}`;
    const config = path.join(dir, 'agent.yaml');
    writeRules(
      config,
      `metrics: 127.0.0.1:0
poll: 200ms
rules:
  - name: spans
    match: { cmdline: "*${marker}-head*${marker}-tail*" }
    trigger: { threads: 1000 }
    actions: [ { exec: [ "/bin/true" ] } ]
  - name: star
    match: { cmdline: "*${marker}-head?${marker}-tail*", name: "*" }
    trigger: { threads: 1000 }
    actions: [ { exec: [ "/bin/true" ] } ]
`,
    );
    const agent = await startAgent(config);
    const p = track(
      spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', `${marker}-head\n${marker}-tail`], {
        stdio: 'ignore',
      }),
    );
    expect(readFileSync(`/proc/${p.pid}/cmdline`, 'latin1')).toContain(`${marker}-head\n${marker}-tail`);
    const s = await waitFor(
      async () => {
        const st = await agent.status();
        return st.rules.every((r) => r.matched.some((x) => x.pid === p.pid)) && st;
      },
      10_000,
      'the process matched by both rules',
      50,
    ).catch(async (e) => {
      throw new Error(`${(e as Error).message}: ${JSON.stringify((await agent.status()).rules)}`);
    });
    expect(s.rules.map((r) => r.matched.map((x) => x.pid))).toEqual([[p.pid], [p.pid]]);
    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
  });

  it.runIf(dotnetAvailable())(
    'runtime rules: a .NET process started later (through its apphost) is matched by runtime; a first-chance exception writes the runtime dump of the type asked for',
    async () => {
      const marker = `agent-test-${process.pid}-${Date.now()}`;
      const out = path.join(dir, 'dotnet');
      mkdirSync(out);
      const config = path.join(dir, 'agent.yaml');
      writeRules(
        config,
        `metrics: 127.0.0.1:0
poll: 200ms
rules:
  - name: dotnet-orders
    match: { runtime: dotnet, cmdline: "*${marker}*" }
    trigger: { exception: ["*OrderFailed*"], count: 1 }
    actions: [ { dump: { dir: ${out}, dotnet: triage } } ]
`,
      );
      const agent = await startAgent(config);
      const t = track(await startDotnetTarget({}, [marker]));
      await waitFor(
        async () => (await agent.status()).rules[0]!.matched.some((x) => x.pid === t.pid),
        15_000,
        'the .NET target matched',
      ).catch((e) => {
        throw new Error(`${(e as Error).message}; the agent said:\n${agent.out()}`);
      });
      // The EventPipe session starts once the process is matched: throw until the rule has fired.
      // The runtime writes into a hidden folder of its own in there first (it writes as the target's user).
      const dumps = () => readdirSync(out).filter((f) => !f.startsWith('.'));
      for (let i = 0; i < 40 && dumps().length === 0; i++) {
        await t.send('throw InvalidOperationException ignored', 'thrown');
        await t.send('throw OrderFailedException agent order failed', 'thrown');
        await new Promise((r) => setTimeout(r, 500));
      }
      await waitFor(() => dumps().length === 1, 30_000, 'the runtime dump');
      const [dump] = dumps();
      expect(dump).toMatch(new RegExp(`^tripdump_fixture_exception_\\d{6}_\\d{6}\\.${t.pid}$`));
      expect(isCore(path.join(out, dump!))).toBe(true);
      const firing = await waitFor(
        async () => (await agent.status()).recent.find((f) => f.rule === 'dotnet-orders' && f.files.length),
        10_000,
        'the firing in the status',
      );
      expect(firing.reason).toMatch(/OrderFailedException: agent order failed/);
      expect(agent.out()).toMatch(/\.NET runtime dump, type triage/);
    },
    90_000,
  );
});
