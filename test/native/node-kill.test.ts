// tripdump killed with SIGKILL while it holds a Node target paused, and while it takes a heap snapshot:
// nothing of tripdump runs then. The target must resume and its inspector must close all the same (V8
// resumes when the session's socket closes; the guard closes the inspector), with no file left behind.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sleep, trackProcesses, waitFor } from '../helpers/processes.js';
import { listeningSockets, spawnNodeTarget } from './node-target.js';

const root = path.resolve(import.meta.dirname, '..', '..');
const cli = path.join(root, 'dist', 'cli', 'main.js');
const holder = path.join(root, 'test', 'fixtures', 'node', 'pause-holder.mjs');
const track = trackProcesses();
const dir = mkdtempSync(path.join(tmpdir(), 'tripdump-node-kill-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function isGuard(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'tripdump-guard';
  } catch {
    return false;
  }
}

describe('tripdump SIGKILLed', () => {
  it('mid-pause: the target resumes, its inspector closes, the guard exits', async () => {
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
    const h = track(
      spawn(process.execPath, [holder, String(t.pid)], { stdio: ['ignore', 'pipe', 'inherit'] }),
    );
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      h.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      h.once('exit', (code) => reject(new Error(`the pause holder exited with ${code}`)));
    });
    const guard = Number(line.split(' ')[1]);
    expect(isGuard(guard)).toBe(true);
    // Paused: no heartbeat for a while, the inspector listening.
    const paused = t.beats.length;
    await sleep(400);
    expect(t.beats.length).toBe(paused);
    expect(listeningSockets(t.pid).length).toBe(1);
    process.kill(h.pid!, 'SIGKILL');
    await t.beatsAfter(5, 10_000);
    await waitFor(() => listeningSockets(t.pid).length === 0, 20_000, 'the guard to close the inspector');
    await waitFor(() => !isGuard(guard), 10_000, 'the guard to exit');
    expect(t.exited).toBe(false);
  });

  it('mid-snapshot: the target runs on, its inspector closes, no file is left', async () => {
    const t = track(
      await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'], env: { FIXTURE_HEAP_MB: '60' } }),
    );
    const c = track(
      spawn(process.execPath, [cli, 'node', 'snapshot', String(t.pid), dir], { stdio: 'ignore' }),
    );
    // Mid-snapshot: the session is attached and the target has stopped beating (busy in V8).
    await waitFor(() => t.stderr.includes('Debugger attached.'), 20_000, 'tripdump to attach');
    const from = t.beats.length;
    await waitFor(
      () => Date.now() - (t.beats.at(-1) ?? 0) > 300 && t.beats.length >= from,
      20_000,
      'the snapshot to start',
    );
    process.kill(c.pid!, 'SIGKILL');
    // V8 finishes the snapshot it started (it cannot stop midway), then the target beats on.
    await t.beatsAfter(5, 120_000);
    await waitFor(() => listeningSockets(t.pid).length === 0, 60_000, 'the guard to close the inspector');
    expect(readdirSync(dir)).toEqual([]);
    expect(t.exited).toBe(false);
  });
});
