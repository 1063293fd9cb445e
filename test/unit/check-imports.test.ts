// scripts/check-imports.mjs, run as lint would run it, against fixture trees (test/fixtures/imports/) that
// break the room rules in known ways, and against this checkout's src/ with its allowlist of known
// violations.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const script = path.join(repo, 'scripts/check-imports.mjs');
const fixtures = path.join(repo, 'test/fixtures/imports');

function run(...args: string[]): Promise<{ code: number; lines: string[]; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, ...args], { cwd: repo }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') return reject(error);
      resolve({ code: error ? Number(error.code) : 0, lines: stdout.split('\n').filter(Boolean), stderr });
    });
  });
}

describe('check-imports', () => {
  it('names every form of a forbidden import by file, line, rooms and specifier, and exits 1', async () => {
    const r = await run('--root', path.join(fixtures, 'violation'));
    expect(r.code).toBe(1);
    // import type, export-from, typeof import(), import(): all dependencies. The comment and the string
    // that look like an import of cli (actions/dump.ts lines 9-10) are not.
    expect(r.lines).toEqual([
      'actions/dump.ts:4: room actions may not import room runtimes (../runtimes/dotnet/dump.js)',
      'actions/dump.ts:6: room actions may not import room runtimes (../runtimes/dotnet/dump.js)',
      'actions/dump.ts:8: room actions may not import room runtimes (../runtimes/node/detect.js)',
      'actions/dump.ts:12: room actions may not import room runtimes (../runtimes/node/detect.js)',
      'dump/core.ts:2: room dump may not import room cli (../cli/main.js)',
      'runtimes/dotnet/dump.ts:2: room runtimes/dotnet may not import room runtimes/node (../node/detect.js)',
    ]);
  });

  it('reports each cycle between rooms once, with one import per edge', async () => {
    const r = await run('--root', path.join(fixtures, 'cycle'));
    expect(r.code).toBe(1);
    expect(r.lines).toEqual([
      'dump/core.ts:3: room dump may not import room sampler (../sampler/sampler.js)',
      'native.ts:2: room native may not import room dump (./dump/core.js)',
      'cycle: dump → native → dump (dump → native: dump/core.ts:2 ../native.js; native → dump: native.ts:2 ./dump/core.js)',
      'cycle: dump → sampler → native → dump (dump → sampler: dump/core.ts:3 ../sampler/sampler.js; ' +
        'sampler → native: sampler/sampler.ts:2 ../native.js; native → dump: native.ts:2 ./dump/core.js)',
    ]);
  });

  it('takes an allowlisted import out of both the violations and the cycles', async () => {
    const r = await run('--root', path.join(fixtures, 'cycle'), '--allow', 'native.ts -> ./dump/core.js');
    expect(r.code).toBe(1);
    expect(r.lines).toEqual([
      'dump/core.ts:3: room dump may not import room sampler (../sampler/sampler.js)',
    ]);
    const both = await run(
      '--root',
      path.join(fixtures, 'cycle'),
      '--allow',
      'native.ts -> ./dump/core.js',
      '--allow',
      'dump/core.ts -> ../sampler/sampler.js',
    );
    expect(both).toMatchObject({ code: 0, lines: [] });
  });

  it('fails on an allowlist entry that matches no import, so the list can only shrink', async () => {
    const r = await run(
      '--root',
      path.join(fixtures, 'clean'),
      '--allow',
      'monitor/monitor.ts -> ../dump/core.js',
    );
    expect(r.code).toBe(1);
    expect(r.lines).toEqual([
      "allowlist: 'monitor/monitor.ts -> ../dump/core.js' matches no import any more: remove it",
    ]);
  });

  it('passes a tree that keeps every rule', async () => {
    expect(await run('--root', path.join(fixtures, 'clean'))).toMatchObject({ code: 0, lines: [] });
  });

  it('refuses a bad command line with exit 2', async () => {
    const r = await run('--allow', 'no arrow here');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--allow "no arrow here": expected 'FILE -> SPECIFIER'`);
  });

  it("passes this checkout's src/ with the known violations allowlisted, and finds them without it", async () => {
    expect(await run()).toMatchObject({ code: 0, lines: [] });
    const strict = await run('--strict');
    expect(strict.code).toBe(1);
    expect(strict.lines).toContainEqual(
      expect.stringMatching(
        /^actions\/dump\.ts:\d+: room actions may not import room runtimes \(\.\.\/runtimes\/dotnet\/dump\.js\)$/,
      ),
    );
    expect(strict.lines.filter((l) => l.startsWith('cycle: ')).length).toBeGreaterThan(0);
  });
});
