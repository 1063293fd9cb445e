// `tripdump node ...` run as a user runs it, against real Node targets (issue 19): on a blocked loop the
// command exits as soon as it has what it came for, while the loop is still blocked, and the inspector it
// opened is closed all the same (by its guard, once the loop turns); a target that dies mid-snapshot is
// reported as the exit it is; what the target names (functions, scripts) is printed escaped.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { start } from '../e2e/run-cli.js';
import { trackProcesses, waitFor } from '../helpers/processes.js';
import { listeningSockets, type NodeTarget, spawnNodeTarget } from './node-target.js';

const track = trackProcesses();
const dir = mkdtempSync(path.join(tmpdir(), 'tripdump-node-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let holds = 0;
/** Blocks the target's loop until the returned release() is called, then `afterMs` more. */
async function hold(
  t: NodeTarget,
  afterMs: number,
  command = 'hold',
): Promise<{ release(): void; from: number }> {
  const file = path.join(dir, `release-${process.pid}-${holds++}`);
  const from = t.lines.length;
  t.command(command === 'hold' ? `hold ${file} ${afterMs}` : `${command} ${file}`);
  await t.line('blocking', 20_000, from);
  return { release: () => writeFileSync(file, ''), from };
}

/** The target's inspector closes (the guard does it once the loop has turned) and it beats on. */
async function closedAfterwards(t: NodeTarget, from: number): Promise<void> {
  await t.line('unblocked', 60_000, from);
  await waitFor(() => listeningSockets(t.pid).length === 0, 60_000, 'the guard to close the inspector');
  await t.beatsAfter(5, 20_000);
  expect(t.exited).toBe(false);
}

describe('tripdump node on a blocked loop', () => {
  // The block ends 3 s after tripdump's session attached (the target says "Debugger attached."): a command
  // that waits for the loop to turn before closing (as it did, up to 5 s) exits after "unblocked"; one that
  // hands the close to the guard exits first, having taken the stack or the report within those 3 s.
  it.each([['stack'], ['report']])(
    'node %s exits while the loop is still blocked; the inspector is closed once it turns',
    async (command) => {
      const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
      const h = await hold(t, 3000);
      const out = mkdtempSync(path.join(dir, 'report-'));
      const attached = t.stderr.split('Debugger attached.').length;
      const run = start(['node', command, String(t.pid), ...(command === 'report' ? [out] : [])]);
      track(run.child);
      await waitFor(
        () => t.stderr.split('Debugger attached.').length > attached || run.child.exitCode !== null,
        60_000,
        'tripdump to attach',
      );
      h.release();
      const code = await run.exit;
      const unblocked = t.lines.slice(h.from).includes('unblocked');
      expect(code, run.err()).toBe(0);
      expect(unblocked, 'the command exited only after the loop was unblocked').toBe(false);
      if (command === 'stack')
        expect(run.out()).toMatch(/^ {4}at blockTheLoopInNamedFunction \(.*target\.mjs:\d+:\d+\)$/m);
      else expect(readdirSync(out).filter((f) => f.endsWith('.report.json')).length).toBe(1);
      await closedAfterwards(t, h.from);
    },
  );

  it('node stack prints function and script names escaped: no escape sequence, no U+202E, no extra line', async () => {
    const t = track(await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'] }));
    const h = await hold(t, 0, 'hostile');
    const json = start(['node', 'stack', String(t.pid), '--json']);
    track(json.child);
    expect(await json.exit, json.err()).toBe(0);
    const run = start(['node', 'stack', String(t.pid)]);
    track(run.child);
    const code = await run.exit;
    h.release();
    expect(code, run.err()).toBe(0);
    const out = run.out();
    // biome-ignore lint/suspicious/noControlCharactersInRegex: what must not reach the terminal
    expect(out).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f\u202e]/);
    const lines = out.trimEnd().split('\n');
    expect(lines.every((l) => l.startsWith('    at '))).toBe(true);
    expect(lines[0]).toMatch(
      /^ {4}at \\x1b]0;owned\\x07evil\\x1b\[31m\\u202eeman\\x0aat fake \(x\.js:1:1\) \(hostile\\x1b\[2J\\u202e\.js:\d+:\d+\)$/,
    );
    // --json keeps the names exactly (U+202E written as a \u escape, inert on a screen).
    expect(json.out()).not.toContain('\u202e');
    const s = JSON.parse(json.out()) as { frames: { functionName: string; url: string }[] };
    expect(s.frames[0]!.functionName).toBe('\x1b]0;owned\x07evil\x1b[31m\u202eeman\nat fake (x.js:1:1)');
    expect(s.frames[0]!.url).toBe('hostile\x1b[2J\u202e.js');
    await closedAfterwards(t, h.from);
  });
});

describe('a Node target that dies mid-snapshot', () => {
  it('is reported as "process N exited", exit 1, no file left (not "connection closed (1006)")', async () => {
    const t = track(
      await spawnNodeTarget({ nodeArgs: ['--inspect-port=0'], env: { FIXTURE_HEAP_MB: '60' } }),
    );
    const out = mkdtempSync(path.join(dir, 'snap-'));
    const run = start(['node', 'snapshot', String(t.pid), out]);
    track(run.child);
    // Mid-snapshot: tripdump's session is attached and the target has stopped beating (busy in V8).
    await waitFor(() => t.stderr.includes('Debugger attached.'), 30_000, 'tripdump to attach');
    const from = t.beats.length;
    await waitFor(
      () => Date.now() - (t.beats.at(-1) ?? 0) > 300 && t.beats.length >= from,
      30_000,
      'the snapshot to start',
    );
    await t.kill();
    const code = await run.exit;
    expect(code, run.err()).toBe(1);
    expect(run.err()).toContain(`process ${t.pid} exited while tripdump was connected to its inspector`);
    expect(run.err()).not.toMatch(/closed \(10\d\d/);
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
  });
});
