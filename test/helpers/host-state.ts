// Tests that change the host's crash settings (core_pattern, core_pipe_limit) run one at a time, across
// test files and across test runs on the same host (a second checkout testing at the same moment), and
// put both settings back byte for byte whatever happened.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CORE_PATTERN, CORE_PIPE_LIMIT, writeProc } from '../../src/crash/install.js';

const LOCK = '/tmp/tripdump-tests-core-pattern.lock';

/** Holds an exclusive flock(1) on LOCK until the returned function is called (or this process dies). */
async function lock(): Promise<() => Promise<void>> {
  const holder = spawn('flock', ['-x', LOCK, '-c', 'echo locked; exec cat'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    holder.once('error', reject);
    holder.once('exit', (code) => reject(new Error(`flock ${LOCK} exited with ${code}`)));
    holder.stdout.once('data', () => resolve());
  });
  holder.removeAllListeners('exit');
  return () =>
    new Promise<void>((resolve) => {
      holder.once('exit', () => resolve());
      holder.stdin.end();
    });
}

/** Runs `body` with the crash settings to itself; restores core_pattern and core_pipe_limit after. */
export async function withCorePattern<T>(body: () => Promise<T>): Promise<T> {
  const unlock = await lock();
  const pattern = readFileSync(CORE_PATTERN);
  const pipeLimit = readFileSync(CORE_PIPE_LIMIT);
  try {
    return await body();
  } finally {
    if (!readFileSync(CORE_PIPE_LIMIT).equals(pipeLimit)) writeProc(CORE_PIPE_LIMIT, pipeLimit);
    if (!readFileSync(CORE_PATTERN).equals(pattern)) writeProc(CORE_PATTERN, pattern);
    await unlock();
  }
}
