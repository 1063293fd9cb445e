// tripdump probed as a hostile user would probe it (issue 12), one class per describe, each with several
// members: output paths, options (duplicates, ranges, misplaced values), faults during a dump, and
// terminal safety. Every case runs the real CLI against real processes and looks at what is on disk.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeCrash } from '../../src/crash/protocol.js';
import {
  procStat,
  procStatus,
  spawnTarget,
  type Target,
  trackProcesses,
  waitFor,
} from '../helpers/processes.js';
import { hasTool, nobodyCanRun, requirement } from '../helpers/requirements.js';
import { cli, isCore, runSync, spawnCopy, start, uniqueFixture } from './run-cli.js';

const track = trackProcesses();
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-hardening-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const files = (d = dir) => readdirSync(d).sort();

/** A kernel thread (PF_KTHREAD in the flags of /proc/PID/stat), read here: kthreadd is pid 2 on a host. */
function kernelThread(): { pid: number; comm: string } | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      const close = stat.lastIndexOf(')');
      const flags = Number(stat.slice(close + 2).split(' ')[6]);
      if (flags & 0x00200000) return { pid: Number(entry), comm: stat.slice(stat.indexOf('(') + 1, close) };
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

async function sleeper(): Promise<Target> {
  return track(await spawnTarget('workload', []));
}

function expectRunning(pid: number): void {
  const status = procStatus(pid);
  expect(status.State).not.toMatch(/^[tT]/);
  expect(status.TracerPid).toBe('0');
}

/** A usage error: exit 2, the message, the usage line, and nothing at all written into `dir`. */
function expectRefused(r: { code: number | null; stderr: string }, message: RegExp | string): void {
  expect(r.code, r.stderr).toBe(2);
  if (typeof message === 'string') expect(r.stderr).toContain(message);
  else expect(r.stderr).toMatch(message);
  expect(r.stderr).toMatch(/\nUsage: tripdump/);
  expect(files().filter((f) => !f.startsWith('keep'))).toEqual([]);
}

/** Runs tripdump as the unprivileged user nobody (65534). */
function asNobody(args: string[]): Promise<{ code: number | null; text: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn('setpriv', [...NOBODY, process.execPath, cli, ...args]);
    let text = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => {
      text += d;
    });
    c.stderr.on('data', (d: Buffer) => {
      text += d;
      stderr += d;
    });
    c.on('close', (code) => resolve({ code, text, stderr }));
  });
}
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

describe('output paths', () => {
  it('a path ending in / is a folder: it must exist, and an existing file is never taken for one', async () => {
    const t = await sleeper();
    writeFileSync(path.join(dir, 'keep'), 'precious');
    for (const args of [
      [String(t.pid), `${dir}/nosuch/`],
      ['-o', String(t.pid), `${dir}/nosuch/`],
      ['dump', String(t.pid), `${dir}/nosuch/`],
      ['dump', String(t.pid), `${dir}/nosuch/`, '--overwrite'],
    ])
      expectRefused(
        runSync(args),
        /folder '.*\/nosuch\/' does not exist \(a path ending in '\/' is a folder\)/,
      );
    for (const args of [
      [String(t.pid), `${dir}/keep/`],
      ['-o', String(t.pid), `${dir}/keep/`],
      ['dump', String(t.pid), `${dir}/keep/`],
      ['dump', String(t.pid), `${dir}/keep/`, '--overwrite'],
      ['-n', '1', '--history', `${dir}/keep/`, String(t.pid), dir],
    ])
      expectRefused(runSync(args), /'.*\/keep\/' ends in '\/' but is not a folder/);
    expect(readFileSync(path.join(dir, 'keep'), 'utf8')).toBe('precious');
    expect(files()).toEqual(['keep']);
    expectRunning(t.pid);
  });

  it('an empty path is an error wherever a path is taken', async () => {
    const t = await sleeper();
    expectRefused(
      runSync([String(t.pid), ''], { cwd: dir }),
      /DUMP_FILE\|DUMP_DIR: an empty path names no file or folder/,
    );
    expectRefused(
      runSync(['dump', String(t.pid), ''], { cwd: dir }),
      /FILE\|DIR: an empty path names no file/,
    );
    expectRefused(runSync(['--history', '', String(t.pid), dir], { cwd: dir }), /--history: an empty path/);
    expectRefused(
      runSync(['watch', '--dir', '', '--on-crash', 'stop'], { cwd: dir }),
      /--dir: an empty path/,
    );
  });

  it('overwrite replaces a regular file only: never a symlink (nor what it points to), a folder or a FIFO', async () => {
    const t = await sleeper();
    const victim = path.join(dir, 'keep-victim');
    writeFileSync(victim, 'precious');
    // ProcDump's custom name is NAME.<pid>: the symlink sits where the dump would go.
    symlinkSync(victim, path.join(dir, `keep-link.${t.pid}`));
    symlinkSync(victim, path.join(dir, 'keep-link'));
    const monitor = runSync(['-o', '-n', '1', String(t.pid), path.join(dir, 'keep-link')]);
    expect(monitor.code).toBe(1);
    expect(monitor.stdout).toMatch(
      new RegExp(`${dir}/keep-link\\.${t.pid} is a symbolic link \\(open: ELOOP\\)`),
    );
    const dump = runSync(['dump', String(t.pid), path.join(dir, 'keep-link'), '--overwrite']);
    expectRefused(dump, /is a symbolic link: --overwrite replaces a regular file only/);
    expect(readlinkSync(path.join(dir, `keep-link.${t.pid}`))).toBe(victim);
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    mkdirSync(path.join(dir, `keep-folder.${t.pid}`));
    const folder = runSync(['-o', '-n', '1', String(t.pid), path.join(dir, 'keep-folder')]);
    expect(folder.code).toBe(1);
    expect(folder.stdout).toMatch(/keep-folder\.\d+ is a folder/);
    expect(files(path.join(dir, `keep-folder.${t.pid}`))).toEqual([]);
    expect(spawnSync('mkfifo', [path.join(dir, 'keep-fifo')]).status).toBe(0);
    const fifo = runSync(['dump', String(t.pid), path.join(dir, 'keep-fifo'), '--overwrite']);
    expectRefused(fifo, /'.*keep-fifo' is not a regular file/);
    expect(lstatSync(path.join(dir, 'keep-fifo')).isFIFO()).toBe(true);
    // Nothing else appeared: no temporary file, no core under another name.
    expect(files()).toEqual(
      ['keep-fifo', `keep-folder.${t.pid}`, 'keep-link', `keep-link.${t.pid}`, 'keep-victim'].sort(),
    );
    expectRunning(t.pid);
  });

  it('an unwritable folder is named as such, not reported as a process permission problem', async () => {
    if (!nobodyCanRun('running tripdump as another user')) return;
    const t = track(
      await spawnTarget('workload', [], {
        wrapper: ['setpriv', ...NOBODY],
      }),
    );
    chmodSync(dir, 0o755); // root's folder: nobody may look, not write
    for (const args of [
      ['dump', String(t.pid), dir],
      ['dump', String(t.pid), path.join(dir, 'core')],
      ['-n', '1', String(t.pid), dir],
      ['-n', '1', String(t.pid), path.join(dir, 'core')],
    ]) {
      const r = await asNobody(args);
      expect(r.code, r.text).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`folder '${dir}' is not writable`));
      expect(r.stderr).not.toMatch(/permission denied for process/);
    }
    expect(files()).toEqual([]);
    expectRunning(t.pid);
  });

  it('names from a 4 KB argv[0] are cut to 255 bytes, keep trigger, time and pid, and never collide', async () => {
    const long = 'x'.repeat(4000);
    const t = track(
      await spawnTarget('workload', [], {
        wrapper: ['/bin/bash', '-c', `exec -a /usr/bin/${long} "$0" "$@"`],
      }),
    );
    const hist = mkdtempSync(path.join(tmpdir(), 'tripdump-hist-'));
    try {
      const r = runSync(['-n', '3', '-s', '0', '--history', hist, String(t.pid), dir]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const d = runSync(['dump', String(t.pid), dir]);
      expect(d.code, d.stderr).toBe(0);
      const names = files();
      expect(names).toHaveLength(4);
      expect(new Set(names).size).toBe(4);
      for (const f of names) {
        expect(Buffer.byteLength(f)).toBeLessThanOrEqual(255);
        expect(f).toMatch(new RegExp(`^x+_(time|manual)_\\d{6}_\\d{6}(_\\d+)?\\.${t.pid}$`));
        expect(isCore(path.join(dir, f))).toBe(true);
      }
      expect(files(hist)).toHaveLength(3);
      for (const f of files(hist)) {
        expect(Buffer.byteLength(f)).toBeLessThanOrEqual(255);
        expect(f).toMatch(new RegExp(`_time_\\d{6}_\\d{6}(_\\d+)?\\.${t.pid}\\.json$`));
      }
    } finally {
      rmSync(hist, { recursive: true, force: true });
    }
  });

  it('a name or path too long for the file system is bad input (exit 2, ENAMETOOLONG named), wherever a path is taken', async () => {
    const t = await sleeper();
    const long = (c: string) => c.repeat(300);
    const deep = `${dir}/${`${'a'.repeat(200)}/`.repeat(21)}core`; // every name fits, the path does not
    for (const args of [
      ['dump', String(t.pid), path.join(dir, long('n'))],
      ['dump', String(t.pid), `${path.join(dir, long('d'))}/`],
      ['dump', String(t.pid), path.join(dir, long('x'), 'core')],
      ['dump', String(t.pid), deep],
      [String(t.pid), `${path.join(dir, long('d'))}/`],
      ['-n', '1', String(t.pid), path.join(dir, long('x'), 'core')],
      // node checks the folder before it touches the process's inspector: this very Node process serves.
      ['node', 'report', String(process.pid), path.join(dir, long('n'))],
      ['watch', '--dir', path.join(dir, long('n')), '--on-crash', 'stop'],
    ])
      expectRefused(
        runSync(args, { cwd: dir }),
        /(is \d+ bytes; a file or folder name holds at most 255|too long for the file system).*ENAMETOOLONG/,
      );
  });

  it('a custom name too long for the file system with .<pid> is refused up front', async () => {
    const t = await sleeper();
    expectRefused(runSync([String(t.pid), path.join(dir, 'n'.repeat(250))]), /a dump name is at most 240/);
  });
});

describe('options', () => {
  it.each([
    [['-n', '1', '-n', '2', '1'], '-n is given twice'],
    [['/N', '1', '-n', '2', '1'], '-n is given twice'],
    [['-o', '-o', '1'], '-o is given twice'],
    [['-w', '-w', 'x'], '-w is given twice'],
    [['-log', 'stdout', '-log', 'syslog', '1'], '-log is given twice'],
    [['--mode', 'stop', '--mode', 'snapshot', '1'], '--mode is given twice'],
    [['-c', '10', '-cl', '5', '1'], '-c and -cl contradict each other'],
    [['-m', '10', '-ml', '5', '1'], '-m and -ml contradict each other'],
    [['dump', '1', '--mode', 'stop', '--mode', 'snapshot'], '--mode is given twice'],
    [['dump', '1', '--filter', '1', '--filter=2'], '--filter is given twice'],
    [['dump', '1', '--json', '--json'], '--json is given twice'],
    [['sample', '1', '--interval', '100', '--interval', '200'], '--interval is given twice'],
    [['sample', '1', '--fields', 'pid', '--fields', 'comm'], '--fields is given twice'],
    [['watch', '--dir', '/tmp', '--dir', '/var/tmp', '--on-crash', 'stop'], '--dir is given twice'],
    [['watch', '--interval', '100', '--interval', '200', '--on-crash', 'stop'], '--interval is given twice'],
    [['crash-handler', 'status', '--json', '--json'], '--json is given twice'],
    [['crash-handler', 'list', '--config', 'a', '--config', 'b'], '--config is given twice'],
  ])('a switch given twice is refused by every command: %j', (args, message) => {
    expectRefused(runSync(args, { cwd: dir }), message);
  });

  it('lists may repeat: watch --on-crash twice is accepted (then refused only for the bad pid)', () => {
    const r = runSync(['watch', '--on-crash', 'snapshot', '--on-crash', 'stop', '99999999'], { cwd: dir });
    expectRefused(r, /pid must be a positive integer/);
  });

  it.each([
    [['-n', '101', '1'], '-n must be from 1 to 100, got 101'],
    [['-s', '86401', '1'], '-s must be from 0 to 86,400, got 86401'],
    [['-s', '99999999999', '1'], '-s must be from 0 to 86,400'],
    [['-pf', '99999999999', '1'], '-pf must be from 1 to 86,400,000'],
    [['--for', '86401', '1'], '--for must be from 0 to 86,400'],
    [['-m', '16777217', '1'], '-m must be from 0 to 16,777,216'],
    [['-m', '10,99999999999', '1'], '-m must be from 0 to 16,777,216'],
    [['-tc', '4194305', '1'], '-tc must be from 0 to 4,194,304'],
    [['-tc', '2.5', '1'], '-tc needs a whole number'],
    [['-fc', '99999999999', '1'], '-fc must be from 0 to 1,073,741,816'],
    [['-so', '-1', '1'], '-so needs a whole number'],
    [['-c', '99999', '1'], /-c must be from 0 to \d+, got 99999/],
    [['-mc', '0x200', '1'], '-mc must be at most 0x1ff'],
    [['sample', '1', '--interval', '99999999999'], '--interval must be from 1 to 86,400,000'],
    [['sample', '1', '--count', '1000000001'], '--count must be from 0 to 1,000,000,000'],
    [['watch', '--interval', '99999999999', '--on-crash', 'stop'], '--interval must be from 1 to 86,400,000'],
    [['watch', '--history', '3601', '--on-crash', 'stop'], '--history must be from 1 to 3,600'],
    [['watch', '--uid', '4294967295', '--on-crash', 'stop'], '--uid must be from 0 to 4,294,967,294'],
    [['watch', '--signal', '65', '--on-crash', 'stop'], '--signal must be from 1 to 64'],
    [['dump', '1', '--filter', '0x200'], '--filter must be at most 0x1ff'],
  ])('every size, count and duration has a range: %j', (args, message) => {
    expectRefused(runSync(args, { cwd: dir }), message);
  });

  it.each([
    [['-c', ' 50', '1'], "-c takes its value without spaces or other blanks around it, got ' 50'"],
    [
      ['-pf', '\t100', '-c', '5', '1'],
      "-pf takes its value without spaces or other blanks around it, got '\\x09100'",
    ],
    [
      ['--for', ' 2', '-c', '5', '1'],
      "--for takes its value without spaces or other blanks around it, got ' 2'",
    ],
    [
      ['-n', '2\n', '-c', '5', '1'],
      "-n takes its value without spaces or other blanks around it, got '2\\x0a'",
    ],
    [['-m', '100, 200', '1'], "-m takes its value without spaces or other blanks around it, got ' 200'"],
    [['-tc', '10 ', '1'], "-tc takes its value without spaces or other blanks around it, got '10 '"],
    [['-sig', ' 10', '1'], "-sig takes its value without spaces or other blanks around it, got ' 10'"],
    [
      ['-mc', ' 33', '-c', '5', '1'],
      "-mc takes its value without spaces or other blanks around it, got ' 33'",
    ],
    [
      ['--heap-used', ' 5', '1'],
      "--heap-used takes its value without spaces or other blanks around it, got ' 5'",
    ],
    [
      ['--loop-delay', '100 ', '1'],
      "--loop-delay takes its value without spaces or other blanks around it, got '100 '",
    ],
    [['-gcm', ' 150', '1'], "-gcm needs [GEN:]MB[,MB...], got ' 150'"],
    [
      ['dump', '1', '--filter', ' 33'],
      "--filter takes its value without spaces or other blanks around it, got ' 33'",
    ],
    [
      ['sample', '1', '--count', ' 1'],
      "--count takes its value without spaces or other blanks around it, got ' 1'",
    ],
    [
      ['watch', '--interval', ' 100', '--on-crash', 'stop'],
      "--interval takes its value without spaces or other blanks around it, got ' 100'",
    ],
    [
      ['watch', '--on-crash', 'dump: 1'],
      "--on-crash dump:PID takes its value without spaces or other blanks around it, got ' 1'",
    ],
    [
      ['node', 'profile', '1', '--seconds', ' 2'],
      "--seconds takes its value without spaces or other blanks around it, got ' 2'",
    ],
    [
      ['counters', '1', '--interval', ' 1'],
      "--interval takes its value without spaces or other blanks around it, got ' 1'",
    ],
  ])('a number with blanks around it is refused, naming the option and the value: %j', (args, message) => {
    expectRefused(runSync(args, { cwd: dir }), message);
  });

  it('a process of the wrong runtime is bad input (exit 2) for counters as for node', async () => {
    const t = await sleeper();
    expectRefused(runSync(['counters', String(t.pid)], { cwd: dir }), `process ${t.pid}: not a .NET process`);
    expectRefused(
      runSync(['node', 'stack', String(t.pid)], { cwd: dir }),
      `process ${t.pid} is not a Node.js process`,
    );
    expectRefused(
      runSync(['-gcm', '10', String(t.pid)], { cwd: dir }),
      `process ${t.pid}: not a .NET process`,
    );
    expectRefused(
      runSync(['--heap-used', '10', String(t.pid)], { cwd: dir }),
      `process ${t.pid} is not a Node.js process`,
    );
  });

  it('watch --interval 99999999999 is refused at once instead of spinning on an overflowed timer', () => {
    const t0 = Date.now();
    const r = runSync(['watch', '--interval', '99999999999', '--on-crash', 'stop'], {
      cwd: dir,
      timeout: 5000,
    });
    expect(r.code).toBe(2);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('a value in the wrong place is named: -m 1234, -log bogus, -log 1234, -pgid PGID PID, -w PID', async () => {
    const t = await sleeper();
    expectRefused(runSync(['-m', '1234'], { cwd: dir }), '-m took 1234 as its value');
    expectRefused(
      runSync(['-c', '90', '-tc', String(t.pid)], { cwd: dir }),
      `-tc took ${t.pid} as its value`,
    );
    expectRefused(
      runSync(['-log', 'bogus', String(t.pid)], { cwd: dir }),
      "-log takes the stream to trace to, syslog or stdout, got 'bogus'",
    );
    expectRefused(
      runSync(['-log', String(t.pid)], { cwd: dir }),
      `-log takes the stream to trace to, syslog or stdout, got '${t.pid}'`,
    );
    expectRefused(
      runSync(['-pgid', String(t.pid), String(t.pid)], { cwd: dir }),
      `-pgid takes one process group id: '${t.pid}' would be the dump file name`,
    );
    expectRefused(
      runSync(['-w', String(t.pid)], { cwd: dir }),
      `-w waits for a process by name, and '${t.pid}' is a PID`,
    );
    expectRefused(runSync(['-pgid', 'abc'], { cwd: dir }), "-pgid takes a process group id, got 'abc'");
  });

  it('pids that do not exist are refused before anything starts, wherever a pid is taken', () => {
    const gone = 4_194_303; // above pid_max on this kind of host, within PID_MAX_LIMIT
    for (const args of [
      [String(gone), dir],
      ['dump', String(gone), dir],
      ['sample', String(gone)],
      ['watch', String(gone), '--on-crash', 'stop'],
      ['watch', '--on-crash', `dump:${gone}`],
      ['counters', String(gone)],
    ])
      expectRefused(runSync(args, { cwd: dir }), `process ${gone} does not exist`);
    expectRefused(
      runSync(['watch', '--on-crash', 'dump:0'], { cwd: dir }),
      /--on-crash dump:PID must be from 1 to/,
    );
  });
});

describe('faults', () => {
  it.each([
    ['dump --mode stop', (pid: number) => ['dump', String(pid), path.join(dir, 'core'), '--mode', 'stop']],
    // gdb holds the target for the whole dump: the same outcome when gcore writes it.
    ['-m 100 -usegcore', (pid: number) => ['-m', '100', '-usegcore', String(pid), dir]],
    ['-m 100 --mode stop', (pid: number) => ['-m', '100', '--mode', 'stop', String(pid), dir]],
  ])(
    '%s of a target SIGKILLed mid-dump: exit 1 "process N exited during the dump", no usage, no file',
    async (name, args) => {
      if (name.includes('usegcore') && !hasTool('gcore', 'gdb')) return;
      const t = track(await spawnTarget('workload', ['--alloc', '1536'], { timeoutMs: 30_000 }));
      await waitFor(() => t.lines.includes('crossed'), 30_000, 'memory to be touched');
      const run = start(args(t.pid), { cwd: dir });
      track(run.child);
      // Killed while the dump is being written: the progress is not visible, so after the dumper attached.
      await waitFor(
        () => procStatus(t.pid).TracerPid !== '0' || run.out().includes('Trigger:'),
        20_000,
        'the dump to start',
      );
      await new Promise((r) => setTimeout(r, 100));
      await t.kill();
      const code = await run.exit;
      const text = run.out() + run.err();
      expect(code, text).toBe(1);
      expect(text).toContain(`process ${t.pid} exited during the dump`);
      expect(text).not.toMatch(/Usage: tripdump/);
      expect(files()).toEqual([]);
    },
  );

  it('a kernel thread and a zombie are named for what they are, by dump (exit 2) and the monitor (exit 1)', async () => {
    const t = track(await spawnTarget('sampler_target', ['--zombie']));
    const zombie = t.value('zombie')!;
    expect(procStat(zombie).state).toBe('Z');
    const cases: [number, string][] = [
      [
        zombie,
        `process ${zombie} (sampler_target) has exited and is not yet reaped by its parent (pid ${t.pid}): a zombie has nothing left to dump`,
      ],
    ];
    const kernel = kernelThread();
    if (requirement(kernel !== undefined, 'no kernel thread is visible here (a PID namespace)'))
      cases.push([
        kernel!.pid,
        `process ${kernel!.pid} (${kernel!.comm}) is a kernel thread: it has no user memory to dump`,
      ]);
    for (const [pid, message] of cases) {
      expectRefused(runSync(['dump', String(pid), dir]), message);
      for (const monitor of [
        ['-c', '0', '-n', '1', String(pid), dir],
        ['-c', '0', '-n', '1', '--mode', 'stop', String(pid), dir],
        ...(hasTool('gcore', 'gdb') ? [['-c', '0', '-n', '1', '-usegcore', String(pid), dir]] : []),
      ]) {
        const r = runSync(monitor);
        expect(r.code, r.stdout + r.stderr).toBe(1);
        expect(r.stdout).toContain(`dump of process ${pid} failed: ${message}`);
        expect(r.stdout + r.stderr).not.toMatch(/EPERM|exited during the dump/);
        expect(files()).toEqual([]);
      }
    }
  });

  it('Ctrl-C during a -usegcore dump: gdb quits and detaches, the target runs on, nothing is left', async () => {
    if (!hasTool('gcore', 'gdb')) return;
    const t = track(await spawnTarget('workload', ['--alloc', '1536'], { timeoutMs: 30_000 }));
    await waitFor(() => t.lines.includes('crossed'), 30_000, 'memory to be touched');
    const run = start(['-usegcore', '-n', '1', String(t.pid), dir]);
    track(run.child);
    await waitFor(() => procStatus(t.pid).TracerPid !== '0', 20_000, 'gdb to attach');
    await new Promise((r) => setTimeout(r, 300));
    run.child.kill('SIGINT');
    expect(await run.exit).toBe(0);
    expect(run.out()).toMatch(/cancelled: nothing was left behind/);
    expectRunning(t.pid);
    expect(files()).toEqual([]); // not even gcore's private folder
  });

  it('a non-dumpable process of your own: the message says so and says what allows it', async () => {
    if (!nobodyCanRun('running tripdump as another user')) return;
    chmodSync(dir, 0o777);
    const script =
      'import ctypes, sys, time\nctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\nprint("ready", flush=True)\ntime.sleep(60)';
    const child = track(
      spawn('setpriv', [...NOBODY, '/usr/bin/python3', '-c', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    ) as ChildProcess;
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    const pid = child.pid!;
    for (const args of [
      ['dump', String(pid), dir],
      ['-n', '1', String(pid), dir],
    ]) {
      const r = await asNobody(args);
      expect(r.code, r.text).toBe(1);
      expect(r.text).toContain(`process ${pid} is not dumpable (it called prctl(PR_SET_DUMPABLE, 0)`);
      expect(r.text).toContain('only root or a process with CAP_SYS_PTRACE can dump it');
    }
    expect(files()).toEqual([]);
    expect(procStatus(pid).TracerPid).toBe('0');
  });
});

describe('terminal safety', () => {
  // A name with ESC (a colour and a window-title sequence), BEL, a newline and a right-to-left override.
  const hostile = '\x1b[31m\x1b]0;p\x07\n\u202e';
  // Control characters other than the line ends we print ourselves.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
  const raw = /[\x00-\x09\x0b-\x1f\x7f]|\u202e/;

  async function hostileProcess(): Promise<{ t: Target; name: string }> {
    // comm is the executable's file name (first 15 bytes): a copy of the fixture under a hostile name.
    const copy = uniqueFixture('workload');
    const file = path.join(path.dirname(copy.file), `w${hostile}`);
    expect(spawnSync('cp', [copy.file, file]).status).toBe(0);
    const t = track(await spawnCopy({ file }, []));
    return { t, name: readFileSync(`/proc/${t.pid}/comm`, 'utf8').replace(/\n$/, '') };
  }

  it('sample prints a hostile comm escaped in its table, and as JSON that keeps it exactly', async () => {
    const { t, name } = await hostileProcess();
    expect(name).toContain('\x1b');
    const table = runSync(['sample', String(t.pid), '--interval', '50']);
    expect(table.code, table.stderr).toBe(0);
    const rows = table.stdout.trim().split('\n');
    expect(rows).toHaveLength(3); // time, heading, one row: the newline did not make a line of its own
    expect(table.stdout.replace(/\n/g, '')).not.toMatch(raw);
    expect(rows[2]).toContain('w\\x1b[31m\\x1b]0;p\\x07\\x0a');
    const json = runSync(['sample', String(t.pid), '--interval', '50', '--json', '--fields', 'comm']);
    expect(json.stdout.trim()).not.toMatch(raw);
    expect(JSON.parse(json.stdout).comm).toBe(name);
  });

  it('monitor messages quoting a hostile name are escaped (-w NAME, a name that matches nothing)', () => {
    const r = runSync([hostile], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'No process matching the specified name (\\x1b[31m\\x1b]0;p\\x07\\x0a\\u202e)',
    );
    expect(r.stderr.replace(/\n/g, '')).not.toMatch(raw);
    const w = start(['-w', `w${hostile}`], { cwd: dir });
    track(w.child);
    return waitFor(() => w.out().includes('Waiting for processes'), 10_000, 'the settings block').then(
      async () => {
        expect(w.out()).toContain('Process Name:');
        expect(w.out().replace(/\n/g, '')).not.toMatch(raw);
        w.child.kill('SIGINT');
        expect(await w.exit).toBe(0);
      },
    );
  });

  it('watch --on-crash logs a hostile crash escaped, and its snapshot file ends in .json as -h says', async () => {
    const sock = path.join(dir, 'crash.sock');
    const help = runSync(['watch', '--help']);
    expect(help.stdout).toContain('DIR/flight_<exe>_<yymmdd_HHMMSS>.<pid>.json');
    const out = mkdtempSync(path.join(tmpdir(), 'tripdump-flight-'));
    try {
      const t = await sleeper();
      const w = start([
        'watch',
        String(t.pid),
        '--socket',
        sock,
        '--dir',
        out,
        '--on-crash',
        'snapshot',
        '--on-crash',
        'stop',
      ]);
      track(w.child);
      await waitFor(() => w.out().includes('waiting for crashes'), 10_000, 'watch to listen');
      await new Promise<void>((resolve, reject) => {
        const c = connect(sock, () => {
          c.end(
            encodeCrash({
              pid: t.pid,
              uid: 0,
              gid: 0,
              signal: 11,
              exeName: `evil${hostile}`,
              coreFile: `/x/${hostile}`,
            }),
          );
        });
        c.on('error', reject);
        c.on('close', () => resolve());
      });
      expect(await w.exit).toBe(0);
      const lines = w.out().split('\n');
      const crash = lines.find((l) => l.includes('Crash:'))!;
      expect(crash).toContain('evil\\x1b[31m\\x1b]0;p\\x07\\x0a\\u202e');
      expect(w.out().replace(/\n/g, '')).not.toMatch(raw);
      const written = files(out);
      expect(written).toEqual([
        expect.stringMatching(new RegExp(`^flight_evil_[\\w]*_\\d{6}_\\d{6}\\.${t.pid}\\.json$`)),
      ]);
      const body = JSON.parse(readFileSync(path.join(out, written[0]!), 'utf8'));
      expect(body.crash.exeName).toBe(`evil${hostile}`);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
