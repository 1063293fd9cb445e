// `tripdump watch --on-crash` end to end: the handler installed in the real core_pattern, a recording
// watcher, a fixture crashing with SIGSEGV; the watcher must receive the notification and run its actions.
// core_pattern is restored byte for byte whatever happened (withCorePattern).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { install, uninstall } from '../../src/crash/install.js';
import { withCorePattern } from '../helpers/host-state.js';
import { spawnTarget, trackProcesses, waitFor } from '../helpers/processes.js';
import { needsRoot } from '../helpers/requirements.js';

const cli = path.resolve(import.meta.dirname, '../../dist/cli/main.js');
const isRoot = needsRoot('crash-watch.test.ts: changing core_pattern');
const track = trackProcesses();

describe.skipIf(!isRoot)('tripdump watch --on-crash', () => {
  it('writes the flight recorder and a core of the parent, then stops', () =>
    withCorePattern(async () => {
      const root = mkdtempSync(path.join('/tmp', 'tdcw-'));
      const out = path.join(root, 'out');
      const socket = path.join(root, 'n.sock');
      const config = path.join(root, 'c.conf');
      try {
        mkdirSync(out);
        const watch = track(
          spawn(process.execPath, [
            cli,
            'watch',
            '--all',
            '--on-crash',
            'snapshot',
            '--on-crash',
            'dump:parent',
            '--on-crash',
            'stop',
            '--exe',
            'crasher',
            '--socket',
            socket,
            '--dir',
            out,
            '--interval',
            '100',
          ]),
        );
        let log = '';
        watch.stdout!.on('data', (d: Buffer) => {
          log += d.toString();
        });
        watch.stderr!.on('data', (d: Buffer) => {
          log += d.toString();
        });
        const exited = new Promise<number | null>((r) => watch.on('close', r));
        await waitFor(() => log.includes('waiting for crashes'), 10_000, 'the watcher to listen');
        install({ configPath: config, dir: path.join(root, 'cores'), socket });
        // The crasher's parent is a shell that waits for it: the process dump:parent writes a core of.
        const target = track(
          await spawnTarget('crasher', [], {
            stdin: true,
            wrapper: ['sh', '-c', 'ulimit -c unlimited; "$0" "$@"; sleep 60'],
          }),
        );
        await new Promise((r) => setTimeout(r, 300)); // a few samples of the crasher in the recorder
        const shell = target.pid;
        const crasherPid = Number(readFileSync(`/proc/${shell}/task/${shell}/children`, 'utf8').trim());
        target.child.stdin!.write('go\n');
        expect(await exited).toBe(0);
        expect(log).toMatch(new RegExp(`Crash: crasher \\(${crasherPid}\\) uid 0 signal 11`));
        const files = readdirSync(out);
        const flight = files.find((f) => f.startsWith('flight_crasher_'))!;
        // watch --help promises .json: the name keeps that promise.
        expect(flight).toMatch(new RegExp(`^flight_crasher_\\d{6}_\\d{6}\\.${crasherPid}\\.json$`));
        const rec = JSON.parse(readFileSync(path.join(out, flight), 'utf8'));
        expect(rec.crash).toMatchObject({ pid: crasherPid, signal: 11, exeName: 'crasher' });
        const mine = rec.processes.find((p: { pid: number }) => p.pid === crasherPid);
        expect(mine.samples.length).toBeGreaterThan(1);
        expect(mine.samples.at(-1).comm).toBe('crasher');
        expect(rec.host.length).toBeGreaterThan(1);
        const core = files.find((f) => f.endsWith(`.${shell}`) && !f.endsWith('.json'));
        expect(core, log).toBeDefined();
        expect(readFileSync(path.join(out, core!)).subarray(0, 4).toString('latin1')).toBe('\x7fELF');
      } finally {
        try {
          uninstall({ configPath: config, force: true });
        } catch {
          // not installed: the byte-for-byte restore below is what matters
        }
        rmSync(root, { recursive: true, force: true });
      }
    }));
});
