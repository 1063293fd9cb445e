// Which of the heavy dependencies each entry point loads: every public entry (by its package.json
// `exports` name, so the map is tested too) and the CLI's light paths, each in a child node with a module
// load hook. `import 'tripdump'` must load no YAML, schema, metrics or WebSocket code; only tripdump/agent
// loads yaml, ajv, prom-client and picomatch; ws is loaded with the first inspector session, by no entry.
// Which modules load is behaviour (what a user's process pays for); how long it takes is bench:startup's.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const HEAVY = ['ajv', 'picomatch', 'prom-client', 'ws', 'yaml'];

let dir: string;
let preload: string;

beforeAll(() => {
  expect(existsSync(CLI), `${CLI} is missing: run npx tsc -p tsconfig.json`).toBe(true);
  dir = mkdtempSync(path.join(tmpdir(), 'tripdump-entry-'));
  // ES modules (ours, and each package's entry as our code imports it) go through the load hook; CommonJS
  // files required from CommonJS do not (Node 20), so require.cache is read at exit as well.
  const hooks = path.join(dir, 'hooks.mjs');
  writeFileSync(
    hooks,
    `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  if (url.startsWith('file:')) appendFileSync(process.env.TRIPDUMP_TEST_LOADED, url + '\\n');
  return next(url, context);
}
`,
  );
  preload = path.join(dir, 'preload.mjs');
  writeFileSync(
    preload,
    `import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { pathToFileURL } from 'node:url';
register(${JSON.stringify(pathToFileURL(hooks).href)});
const cache = createRequire(import.meta.url).cache;
process.on('exit', () => {
  const files = Object.keys(cache).map((f) => pathToFileURL(f).href);
  appendFileSync(process.env.TRIPDUMP_TEST_LOADED, files.join('\\n') + '\\n');
});
`,
  );
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let runs = 0;

/** The heavy packages a child node loads running `args` (after the preload), and its stdout. */
async function heavyLoaded(args: string[]): Promise<{ packages: string[]; stdout: string }> {
  const log = path.join(dir, `loaded-${runs++}.txt`);
  writeFileSync(log, '');
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', pathToFileURL(preload).href, ...args],
      { cwd: ROOT, env: { ...process.env, TRIPDUMP_TEST_LOADED: log } },
      (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out)),
    );
  });
  const packages = new Set<string>();
  for (const url of readFileSync(log, 'utf8').split('\n')) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (m && HEAVY.includes(m[1]!)) packages.add(m[1]!);
  }
  return { packages: [...packages].sort(), stdout };
}

/** Imports a package entry by name from the package's own folder (self-reference through `exports`). */
function importEntry(name: string): string[] {
  return [
    '--input-type=module',
    '-e',
    `const m = await import(${JSON.stringify(name)}); console.log(Object.keys(m).length);`,
  ];
}

describe('public entry points', () => {
  it.each([
    ['tripdump', []],
    ['tripdump/dotnet', []],
    ['tripdump/node', []],
    ['tripdump/crash', []],
    ['tripdump/agent', ['ajv', 'picomatch', 'prom-client', 'yaml']],
  ])('%s loads %j of the heavy packages', async (entry, expected) => {
    const { packages, stdout } = await heavyLoaded(importEntry(entry));
    // The entry resolved and exported something (a missing export map entry would throw instead).
    expect(Number(stdout.trim())).toBeGreaterThan(0);
    expect(packages).toEqual(expected);
  });

  it('keeps the agent, .NET, Node and crash APIs out of the root entry', async () => {
    const names = (entry: string) =>
      heavyLoaded([
        '--input-type=module',
        '-e',
        `console.log(Object.keys(await import(${JSON.stringify(entry)})).join(' '))`,
      ]).then((r) => new Set(r.stdout.trim().split(' ')));
    const root = await names('tripdump');
    for (const entry of ['tripdump/agent', 'tripdump/dotnet', 'tripdump/node', 'tripdump/crash'])
      for (const name of await names(entry))
        expect(root.has(name), `${name} of ${entry} in tripdump`).toBe(false);
    expect(root.has('writeCoreDump') && root.has('Monitor') && root.has('Sampler')).toBe(true);
  });
});

describe('command line', () => {
  it.each([
    [['--version'], /^tripdump \d/],
    [['--help'], /^Usage: tripdump/],
    // The monitor's switches (ProcDump's -h), .NET and Node ones included.
    [['-h'], /-gcm[\s\S]*--heap-used/],
    [['sample', '--help'], /^Usage: tripdump sample/],
    [['sample', String(process.pid), '--count', '1', '--interval', '1'], /\S/],
  ])('tripdump %j loads none of the heavy packages', async (args, output) => {
    const { packages, stdout } = await heavyLoaded([CLI, ...args]);
    expect(stdout).toMatch(output);
    expect(packages).toEqual([]);
  });

  it('tripdump agent --help loads the agent packages (it is the agent command)', async () => {
    const { packages, stdout } = await heavyLoaded([CLI, 'agent', '--help']);
    expect(stdout).toMatch(/^Usage: tripdump agent/);
    expect(packages).toEqual(['ajv', 'picomatch', 'prom-client', 'yaml']);
  });
});
