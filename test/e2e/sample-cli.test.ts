// The `tripdump sample` command as a user runs it: the built CLI, real processes, exit codes.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const cli = path.resolve(import.meta.dirname, '../../dist/cli/main.js');
const started: ChildProcess[] = [];

function startSleeper(): number {
  const child = spawn('/bin/sleep', ['300'], { stdio: 'ignore' });
  started.push(child);
  return child.pid!;
}

afterEach(() => {
  for (const c of started.splice(0))
    if (c.pid && c.exitCode === null && c.signalCode === null) process.kill(c.pid, 'SIGKILL');
});

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the CLI without blocking this process; `onStdout` sees the output so far as it arrives. */
function runAsync(
  args: string[],
  onStdout: (stdout: string) => void = () => {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onStdout(stdout);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('tripdump sample', () => {
  it('prints JSON lines whose values match /proc', () => {
    const pid = startSleeper();
    const r = run('sample', String(pid), '--json', '--fields', 'all', '--interval', '50', '--count', '2');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(2);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    for (const rec of lines) {
      expect(rec.pid).toBe(pid);
      expect(rec.comm).toBe('sleep');
      expect(rec.ppid).toBe(process.pid);
      expect(rec.state).toBe('S');
      expect(rec.threads).toBe(1);
      expect(rec.pgid).toBe(Number(after[2]));
      expect(rec.cpuPercent).toBe(0);
      expect(typeof rec.fds).toBe('number');
      expect(rec.sockets).toBe(0);
      // every documented camelCase name is present
      for (const k of [
        'startTime',
        'userTicks',
        'systemTicks',
        'rssBytes',
        'vmBytes',
        'readBytes',
        'writeBytes',
      ])
        expect(rec).toHaveProperty(k);
    }
    expect(lines[0]!.fds).toBe(
      spawnSync('ls', [`/proc/${pid}/fd`], { encoding: 'utf8' })
        .stdout.trim()
        .split('\n').length,
    );
  });

  it('prints a table with the default columns', () => {
    const pid = startSleeper();
    const r = run('sample', String(pid), '--interval', '20');
    expect(r.code).toBe(0);
    const [, header, row] = r.stdout.split('\n');
    expect(header).toMatch(/PID\s+PPID\s+STATE\s+THR\s+%CPU\s+RSS\s+VSZ\s+COMM/);
    expect(row).toMatch(new RegExp(`^\\s*${pid}\\s+${process.pid}\\s+S\\s+1\\s+0\\.0\\s.*sleep$`));
  });

  it('reports an exit and stops when every watched process is gone', async () => {
    const child = spawn('/bin/sleep', ['300'], { stdio: 'ignore' });
    started.push(child);
    // Asynchronously, so this process reaps the sleeper once it is killed (a zombie is still a process).
    // It is ended after the first sample, however long the CLI took to start.
    let killed = false;
    const r = await runAsync(
      ['sample', String(child.pid), '--json', '--interval', '150', '--count', '20'],
      () => {
        if (!killed) process.kill(child.pid!, 'SIGKILL');
        killed = true;
      },
    );
    expect(r.code).toBe(0);
    const events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event?: string; pid: number });
    expect(events.filter((e) => e.event === 'exit')).toEqual([expect.objectContaining({ pid: child.pid })]);
    expect(r.stderr).toContain('every watched process has exited');
  });

  it.each([
    [['sample', '99999999'], /pid must be a positive integer/],
    [['sample', '4194304'], /process 4194304 does not exist/],
    [['sample', 'abc'], /'abc' is not a pid/],
    [['sample', '1', '--fields', 'rssBytes,bogus'], /unknown field 'bogus'/],
    [['sample', '1', '--interval', '-5'], /--interval needs a whole number from 1 to 86,400,000, got '-5'/],
    [['sample', '1', '--interval', '0'], /--interval must be from 1 to 86,400,000, got 0/],
    [['sample', '1', '--count', 'x'], /--count needs a whole number from 0 to 1,000,000,000, got 'x'/],
    [['sample', '--frobnicate'], /Unknown option '--frobnicate'/],
    [['sample'], /nothing to sample/],
    [['sample', '1', '--all'], /either PIDs or --all/],
    // ProcDump's bare process name: looked up once, and none runs under this name.
    [['frobnicate'], /No process matching the specified name \(frobnicate\) can be found\./],
  ])('rejects %j with exit 2 and a message naming the problem', (args, message) => {
    const r = run(...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
  });

  it('answers --version and --help', () => {
    const pkg = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../../package.json'), 'utf8'));
    expect(run('--version')).toMatchObject({ code: 0, stdout: `tripdump ${pkg.version}\n` });
    const help = run('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('sample [PID...|--all]');
    expect(run('sample', '--help').stdout).toContain('--fields LIST|all');
  });

  it('stops on SIGTERM with exit 0', async () => {
    const pid = startSleeper();
    const child = spawn(process.execPath, [
      cli,
      'sample',
      String(pid),
      '--count',
      '0',
      '--interval',
      '50',
      '--json',
    ]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (out.includes('\n')) {
          clearInterval(t);
          resolve();
        }
      }, 20);
    });
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
  });
  it('stops quietly with exit 0 when the reader of its output goes away (| head)', async () => {
    const child = spawn(process.execPath, [cli, 'sample', '--all', '--count', '0', '--interval', '50']);
    try {
      let err = '';
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
      });
      // The first screen read, then the pipe closed: its next write fails with EPIPE.
      await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      child.stdout.destroy();
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(err).toBe('');
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
