// Running the built CLI (dist/cli/main.js) from the e2e tests: one process per run, ended by the test.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { onTestFinished } from 'vitest';
import { fixture, type SpawnTargetOptions, spawnTarget, type Target } from '../helpers/processes.js';

export const cli = path.resolve(import.meta.dirname, '../../dist/cli/main.js');

export interface Run {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  /** Resolves with the exit code (null when killed by a signal). */
  exit: Promise<number | null>;
}

/** Starts tripdump with `args`; pass the result to the test's track() so it is ended by pid. */
export function start(args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Run {
  const child = spawn(process.execPath, [cli, ...args], { cwd: opts.cwd, env: opts.env });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exit };
}

/** Runs tripdump to completion (for commands that end by themselves). */
export function runSync(
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {},
): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], {
    cwd: opts.cwd,
    env: opts.env,
    encoding: 'utf8',
    timeout: opts.timeout ?? 30_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * A copy of a fixture under a name of its own (≤ 15 bytes, so comm holds all of it): -w NAME then matches
 * the processes this test starts and none that other tests on the host run from the same fixture. Call it
 * inside a test: the copy is removed when the test ends.
 */
export function uniqueFixture(name: string): { name: string; file: string } {
  const unique = `${name.slice(0, 6)}${Math.random().toString(36).slice(2, 8)}`;
  const folder = mkdtempSync(path.join(tmpdir(), 'tripdump-fixture-'));
  // Removed when the test ends (a running copy keeps its inode until it is killed).
  onTestFinished(() => rmSync(folder, { recursive: true, force: true }));
  const file = path.join(folder, unique);
  copyFileSync(fixture(name), file);
  spawnSync('chmod', ['755', file]);
  return { name: unique, file };
}

/** spawnTarget for a uniqueFixture copy: the shell execs the copy in place, so the pid is the copy's. */
export function spawnCopy(
  copy: { file: string },
  args: readonly string[] = [],
  opts: SpawnTargetOptions = {},
): Promise<Target> {
  // spawnTarget runs [...wrapper, fixtureFile, ...args]: the script drops the fixture's path and execs the copy.
  const wrapper = [...(opts.wrapper ?? []), '/bin/sh', '-c', `shift; exec '${copy.file}' "$@"`, 'sh'];
  return spawnTarget('workload', args, { ...opts, wrapper });
}

/** Whether a file is an ELF core (e_type ET_CORE), read from its header. */
export function isCore(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const h = Buffer.alloc(18);
    readSync(fd, h, 0, 18, 0);
    return h.readUInt32BE(0) === 0x7f454c46 && h.readUInt16LE(16) === 4;
  } finally {
    closeSync(fd);
  }
}
