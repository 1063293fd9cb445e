// The ProcDump-style command line against real workloads: one scenario per trigger and per quit path.
// Each dump must load in gdb; the dump folder holds the dumps and nothing else, and the sample history
// asked for with --history (in a folder of its own) names the trigger and value.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fixture, procStatus, spawnTarget, trackProcesses, waitFor } from '../helpers/processes.js';
import { hasTool } from '../helpers/requirements.js';
import { cli, runSync, spawnCopy, start as startCli, uniqueFixture } from './run-cli.js';

const track = trackProcesses();
let dir: string;
let hist: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-monitor-'));
  hist = mkdtempSync(path.join(tmpdir(), 'tripdump-history-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(hist, { recursive: true, force: true });
});
const history = (dump: string) => JSON.parse(readFileSync(path.join(hist, `${dump}.json`), 'utf8'));

function start(args: string[]) {
  const run = startCli(args, { cwd: dir });
  track(run.child);
  return run;
}

const dumps = () => readdirSync(dir);

function gdbThreads(core: string): number {
  const r = spawnSync('gdb', ['-batch', '-ex', 'info threads', fixture('workload'), core], {
    encoding: 'utf8',
  });
  expect(r.stdout + r.stderr).not.toMatch(
    /not a core dump|format not recognized|Cannot access memory at address 0x0\n/,
  );
  return (r.stdout.match(/^\*?\s+\d+\s+Thread /gm) ?? []).length;
}

const scenarios: { name: string; workload: string[]; args: string[]; tag: string; count: number }[] = [
  {
    name: 'CPU at or above',
    workload: ['--delay', '400', '--spin'],
    args: ['-c', '25', '-pf', '100'], // a spinner gets 25 % of a core even on a loaded CI host
    tag: 'cpu',
    count: 1,
  },
  { name: 'CPU below', workload: [], args: ['-cl', '5', '-pf', '100'], tag: 'cpu', count: 1 },
  {
    name: 'memory at or above',
    workload: ['--delay', '400', '--alloc', '64'],
    args: ['-m', '48', '-pf', '100'],
    tag: 'commit',
    count: 1,
  },
  {
    name: 'memory thresholds in turn',
    workload: ['--delay', '300', '--alloc', '32', '--repeat', '3', '--step', '500'],
    args: ['-m', '24,56,88', '-s', '0', '-pf', '100'],
    tag: 'commit',
    count: 3,
  },
  { name: 'memory below', workload: [], args: ['-ml', '200', '-pf', '100'], tag: 'commit', count: 1 },
  {
    name: 'thread count',
    workload: ['--delay', '400', '--threads', '7'],
    args: ['-tc', '6', '-pf', '100'],
    tag: 'thread',
    count: 1,
  },
  {
    name: 'fd count',
    workload: ['--delay', '400', '--fds', '40'],
    args: ['-fc', '40', '-pf', '100'],
    tag: 'filedesc',
    count: 1,
  },
  {
    name: 'socket count',
    workload: ['--delay', '400', '--sockets', '5'],
    args: ['-so', '5', '-pf', '100'],
    tag: 'socket',
    count: 1,
  },
  {
    name: 'timer (no trigger)',
    workload: [],
    args: ['-n', '2', '-s', '1', '-pf', '100'],
    tag: 'time',
    count: 2,
  },
];

describe('triggers', () => {
  it.each(scenarios)('$name writes $count dump(s) named for "$tag" that load in gdb', async (s) => {
    const target = track(await spawnTarget('workload', s.workload));
    const run = start([...s.args, '--history', hist, String(target.pid), dir]);
    expect(await run.exit).toBe(0);
    const files = dumps();
    // Exactly ProcDump's files: a glob such as *_commit_* finds the dumps and nothing else.
    expect(files, run.out()).toHaveLength(s.count);
    expect(readdirSync(hist).sort()).toEqual(files.map((f) => `${f}.json`).sort());
    for (const f of files) {
      expect(f).toMatch(new RegExp(`^workload_${s.tag}_\\d{6}_\\d{6}(_\\d+)?\\.${target.pid}$`));
      expect(statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
      expect(gdbThreads(path.join(dir, f))).toBe(Number(procStatus(target.pid).Threads));
      const side = history(f);
      expect(side.trigger.tag).toBe(s.tag);
      expect(side.process).toMatchObject({ pid: target.pid, name: 'workload' });
      expect(side.samples.length).toBeGreaterThan(0);
      expect(side.samples.length).toBeLessThanOrEqual(60);
      const met = side.trigger.reason.includes('>=')
        ? side.trigger.value >= side.trigger.threshold
        : side.trigger.value < side.trigger.threshold;
      if (s.tag !== 'time') expect(met).toBe(true);
    }
    if (s.name === 'memory thresholds in turn') {
      const thresholds = files.map((f) => history(f).trigger.threshold);
      expect(thresholds.sort((a: number, b: number) => a - b)).toEqual([24, 56, 88]);
    }
    expect(run.out()).toMatch(/Stopped \(all dumps written\)/);
    expect(procStatus(target.pid).State).not.toMatch(/^[tT]/);
    expect(procStatus(target.pid).TracerPid).toBe('0');
  });

  it('writes nothing while the workload stays below the threshold, and Ctrl-C exits 0', async () => {
    const target = track(await spawnTarget('workload', []));
    const run = start(['-c', '50', '-tc', '4', '-pf', '100', String(target.pid), dir]);
    await waitFor(() => run.out().includes('Press Ctrl-C'), 10_000, 'the settings block');
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = Date.now();
    run.child.kill('SIGINT');
    expect(await run.exit).toBe(0);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(dumps()).toEqual([]);
    expect(run.out()).toMatch(/Stopped \(interrupted\): 0 dumps written/);
  });

  it('--for holds a dump back until the condition has lasted that long', async () => {
    const target = track(await spawnTarget('workload', ['--delay', '200', '--threads', '3']));
    const run = start(['-tc', '2', '--for', '1.5', '-pf', '100', '--history', hist, String(target.pid), dir]);
    await waitFor(() => target.lines.includes('crossed'), 5000, 'the workload to cross');
    const crossed = Date.now();
    expect(await run.exit).toBe(0);
    const side = history(dumps()[0]!);
    expect(Date.parse(side.time) - crossed).toBeGreaterThanOrEqual(1400);
  });
});

describe('signals', () => {
  it('-sig dumps the target right before the signal, then delivers it exactly once', async () => {
    const target = track(await spawnTarget('signal_target', [], { stdin: true }));
    const run = start(['-sig', 'USR1', '--history', hist, String(target.pid), dir]);
    await waitFor(() => run.out().includes('Press Ctrl-C'), 10_000, 'the settings block');
    await waitFor(() => procStatus(target.pid).TracerPid !== '0', 10_000, 'the watcher to attach');
    expect(target.lines.filter((l) => l.startsWith('usr1'))).toEqual([]);
    process.kill(target.pid, 'SIGUSR1');
    expect(await run.exit).toBe(0);
    const files = dumps();
    expect(files).toEqual([
      expect.stringMatching(new RegExp(`^signal_target_signal_\\d{6}_\\d{6}\\.${target.pid}$`)),
    ]);
    const side = history(files[0]!);
    expect(side.trigger).toMatchObject({ tag: 'signal', value: 10 });
    const gdb = spawnSync(
      'gdb',
      ['-batch', '-ex', 'info threads', fixture('signal_target'), path.join(dir, files[0]!)],
      {
        encoding: 'utf8',
      },
    );
    expect(gdb.stdout + gdb.stderr).toMatch(/Program terminated with signal SIGUSR1/);
    await waitFor(() => target.lines.includes('usr1 1'), 5000, 'the handler to run');
    expect(target.lines.filter((l) => l.startsWith('usr1'))).toEqual(['usr1 1']);
    expect(procStatus(target.pid).State).not.toMatch(/^[tT]/);
    expect(procStatus(target.pid).TracerPid).toBe('0');
  });

  it('-sig is armed when the settings block is printed: a signal sent at that moment is caught (5 runs)', async () => {
    for (let i = 0; i < 5; i++) {
      const target = track(await spawnTarget('signal_target', [], { stdin: true }));
      const run = start(['-sig', 'USR1', String(target.pid), path.join(dir, `run${i}`)]);
      await waitFor(() => run.out().includes('Press Ctrl-C'), 10_000, 'the settings block');
      process.kill(target.pid, 'SIGUSR1');
      let code: number | null | undefined;
      void run.exit.then((c) => {
        code = c;
      });
      // A watcher not yet attached lets the signal through (the handler runs) and waits for ever.
      await waitFor(() => code !== undefined, 20_000, `the dump of run ${i + 1}`);
      expect(code).toBe(0);
      expect(run.out()).toMatch(/Trigger: Signal SIGUSR1/);
      await target.kill();
    }
  });

  it.runIf(hasTool('strace', 'strace'))(
    'a trigger that cannot attach to a live target says which, on which process and why, and exits 1',
    async () => {
      const target = track(await spawnTarget('signal_target', [], { stdin: true }));
      // strace holds the target: the signal watcher cannot seize it.
      const strace = track(
        spawn('strace', ['-p', String(target.pid), '-o', '/dev/null'], { stdio: 'ignore' }),
      );
      await waitFor(
        () => procStatus(target.pid).TracerPid === String(strace.pid),
        10_000,
        'strace to attach',
      );
      const run = start(['-sig', 'USR1', String(target.pid), dir]);
      expect(await run.exit).toBe(1);
      expect(run.out()).toMatch(
        new RegExp(`ERROR\\]: signal of process ${target.pid} failed: .*traced`, 'i'),
      );
      expect(run.out()).toMatch(
        new RegExp(
          `Stopped \\(the signal trigger could not watch signal_target \\(${target.pid}\\), which still runs: `,
        ),
      );
      expect(run.out()).not.toMatch(/the target exited/);
      expect(run.out()).not.toMatch(/Press Ctrl-C/);
      expect(dumps()).toEqual([]);
    },
  );

  it('-sig refuses to be combined with a polled trigger', () => {
    const r = spawnSync(process.execPath, [cli, '-sig', '10', '-c', '90', '1'], {
      cwd: dir,
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/-sig cannot be combined with other triggers/);
  });
});

describe('quitting', () => {
  it('SIGTERM during a dump cancels it: no partial file, target running', async () => {
    const target = track(await spawnTarget('workload', ['--alloc', '1536'], { timeoutMs: 30_000 }));
    await waitFor(() => target.lines.includes('crossed'), 30_000, 'memory to be touched');
    const run = start(['-m', '1000', '--mode', 'stop', '-pf', '100', String(target.pid), dir]);
    await waitFor(() => run.out().includes('Trigger:'), 10_000, 'the trigger');
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(readdirSync(dir)).toEqual([]);
    const status = procStatus(target.pid);
    expect(status.State).not.toMatch(/^[tT]/);
    expect(status.TracerPid).toBe('0');
  });

  it('exits 0 with "Process exited" when the target ends', async () => {
    const target = track(await spawnTarget('workload', []));
    const run = start(['-c', '90', '-pf', '100', String(target.pid), dir]);
    await waitFor(() => run.out().includes('Press Ctrl-C'), 10_000, 'the settings block');
    await target.kill();
    expect(await run.exit).toBe(0);
    expect(run.out()).toMatch(new RegExp(`Process exited: workload \\(${target.pid}\\)`));
    expect(run.out()).toMatch(/Stopped \(the target exited\)/);
  });
});

describe('several processes', () => {
  it('-w catches a process started later and exits once it has its dump', async () => {
    // A copy under a name of its own: other test files start workloads at the same time.
    const copy = uniqueFixture('workload');
    const run = start(['-w', copy.name, '-tc', '3', '-pf', '100', dir]);
    await waitFor(() => run.out().includes('Waiting for processes'), 10_000, 'the wait message');
    await new Promise((r) => setTimeout(r, 300));
    const target = track(await spawnCopy(copy, ['--delay', '300', '--threads', '3']));
    expect(await run.exit).toBe(0);
    expect(dumps()).toEqual([expect.stringMatching(new RegExp(`^${copy.name}_thread_.*\\.${target.pid}$`))]);
  });

  it('-pgid covers a member that joins the group later', async () => {
    // Each workload is started through python, which sets its group and execs it: the first leads a new
    // group, the second joins it (setpgid works within one session, which all of them share).
    const setpgid = (g: number) => [
      'python3',
      '-c',
      `import os,sys; os.setpgid(0, ${g}); os.execv(sys.argv[1], sys.argv[1:])`,
    ];
    const leader = track(await spawnTarget('workload', [], { wrapper: setpgid(0) }));
    const pgid = Number(readFileSync(`/proc/${leader.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[2]);
    expect(pgid).toBe(leader.pid);
    const run = start(['-pgid', String(pgid), '-tc', '3', '-pf', '100', dir]);
    await waitFor(() => run.out().includes('Monitoring workload'), 10_000, 'the leader to be monitored');
    const joiner = track(
      await spawnTarget('workload', ['--delay', '300', '--threads', '3'], {
        wrapper: setpgid(pgid),
      }),
    );
    await waitFor(() => dumps().some((f) => f.endsWith(`.${joiner.pid}`)), 15_000, 'a dump of the joiner');
    run.child.kill('SIGINT');
    expect(await run.exit).toBe(0);
    expect(dumps().filter((f) => f.endsWith(`.${leader.pid}`))).toEqual([]);
  });
});

describe('bad input', () => {
  it.each([
    [['-c', 'abc', '1'], /-c needs a number from 0 to [\d,]+, got 'abc'/],
    [['-c', '-5', '1'], /-c needs a number from 0 to [\d,]+, got '-5'/],
    [['-n', '0', '1'], /-n must be from 1 to 100, got 0/],
    [['1', '-m'], /-m needs a value/],
    [['-m', '100,', '1'], /-m needs MB\[,MB...\], got '100,'/],
    [['-pf', '0', '1'], /-pf must be from 1 to 86,400,000, got 0/],
    [
      ['-mc', 'zz', '1'],
      /-mc needs a hex coredump_filter mask from 0 to 0x1ff, such as 33 or 0x33, got 'zz'/,
    ],
    [['-frobnicate', '1'], /unknown switch '-frobnicate'/],
    [['/frobnicate', '1'], /'\/frobnicate' is neither a PID nor a process name/],
    [['-c', '90', '4194304'], /process 4194304 does not exist/],
    [['-w', 'x', '-pgid', '1'], /-w and -pgid cannot be used together/],
    [['-c', '90', '1', '/nonexistent/dir/f'], /folder '\/nonexistent\/dir' does not exist/],
    [['-c', '90', '-cl', '10', '1'], /-c and -cl contradict/],
    [['-c'], /-c needs a value/],
    [['-sig', 'SIGKILL', '1'], /cannot intercept signal SIGKILL/],
    [['-sig', '10,', '1'], /-sig needs N\[,N...\], got '10,'/],
  ])('%j: exit 2, a message naming the option and value, nothing written', (args, message) => {
    const r = spawnSync(process.execPath, [cli, ...args], { cwd: dir, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toContain('Usage: tripdump');
    expect(r.stdout).not.toContain('Press Ctrl-C');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('accepts switches in any case and with / (ProcDump style)', () => {
    const r = spawnSync(process.execPath, [cli, '/C', '90', '-PF', '100', '/?'], {
      cwd: dir,
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: tripdump [options]');
    expect(existsSync(path.join(dir, 'x'))).toBe(false);
  });
});

describe('help, and counted nouns in what the commands print', () => {
  it('-h names every other command and the switches tripdump has; --help lists counters and agent', () => {
    const h = runSync(['-h']);
    expect(h.code).toBe(0);
    const others = /Other commands[^\n]*\n[^\n]*/.exec(h.stdout)?.[0] ?? '';
    for (const c of ['dump', 'sample', 'counters', 'agent', 'crash-handler', 'watch', 'node'])
      expect(others, c).toMatch(new RegExp(`[ :]${c}[,;]`));
    expect(h.stdout).toMatch(/\n {2}--type T {6}a \.NET process is dumped by its own runtime/);
    // The .NET switches are there, and nothing says they are refused.
    for (const s of ['-gcm', '-gcgen', '-e ', '-f ', '-pc ', '-pcl ']) expect(h.stdout).toContain(`\n  ${s}`);
    expect(h.stdout).toMatch(/Not available yet \(refused, exit 2\): -restrack, -sr, -fx \(/);
    const help = runSync(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/\n {2}counters PID /);
    expect(help.stdout).toMatch(/\n {2}agent --config FILE /);
    expect(help.stdout).toMatch(/\n {2}-h, -\? +the monitoring switches/);
  });

  it('says "1 thread", "1 rule", "1 dump": a count of one is singular', () => {
    const one = track(spawn('sleep', ['60'], { stdio: 'ignore' }));
    const d = runSync(['dump', String(one.pid), `${dir}/`]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toMatch(/\n {2}1 thread, \d+ mappings? \(/);
    const config = path.join(hist, 'agent.yaml');
    writeFileSync(
      config,
      `rules:\n  - name: only\n    match: { comm: "nothing-${process.pid}" }\n    trigger: { memory: 100 }\n    actions: [ { exec: [ "/bin/true" ] } ]\n`,
    );
    const check = runSync(['agent', 'check', '--config', config]);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toContain(': 1 rule (only)');
    const m = runSync(['-n', '1', String(one.pid), dir], { timeout: 60_000 });
    expect(m.code, m.stderr).toBe(0);
    expect(m.stdout).toMatch(/Stopped \(all dumps written\): 1 dump written: /);
  });
});
