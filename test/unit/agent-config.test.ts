// The agent's rules file: the example works as written, every option reaches the typed config, and
// a bad file is refused with file:line:column for each problem (schema, syntax, and the checks the schema
// cannot express). Fixture files under test/fixtures/agent.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  loadConfig,
  MAX_CONFIG_BYTES,
  parseDuration,
  parseSize,
} from '../../src/agent/config.js';

const fixture = (name: string) => path.resolve(import.meta.dirname, '../fixtures/agent', name);

function problems(name: string): string[] {
  try {
    loadConfig(fixture(name));
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).message.split('\n');
  }
  throw new Error(`${name} was accepted`);
}

describe('agent rules file', () => {
  it("reads the issue's example as written", () => {
    const c = loadConfig(fixture('issue-example.yaml'));
    expect(c.metrics).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(c.pollMs).toBe(1000);
    expect(c.rules).toEqual([
      {
        name: 'big-workers',
        match: { comm: ['worker-*'] },
        trigger: { memory: 500, forMs: 0, cooldownMs: 10_000, count: Number.MAX_SAFE_INTEGER },
        actions: [{ dump: { dir: '/var/lib/tripdump' } }],
        limit: { count: 3, windowMs: 3_600_000 },
      },
    ]);
    expect(c.limits).toEqual({ windowMs: 3_600_000, minFree: { fraction: 0.05 } });
  });

  it('reads JSON, with every option', () => {
    const c = loadConfig(fixture('full.json'));
    expect(c.metrics).toEqual({ host: '::1', port: 9465 });
    expect(c).toMatchObject({ pollMs: 250, historySize: 30, maxSeries: 500 });
    expect(c.limits).toEqual({ bytes: 2 ** 31, windowMs: 1_800_000, minFree: { bytes: 2 ** 30 } });
    expect(c.rules[0]).toEqual({
      name: 'node-heavy',
      match: {
        name: ['node', 'nodejs'],
        uid: [1000, 1001],
        cgroup: ['/system.slice/*.service'],
        container: '0123456789ab',
        runtime: 'node',
        cmdline: ['* server.js*'],
      },
      trigger: { memory: 1024, threads: 200, forMs: 5000, cooldownMs: 60_000, count: 2 },
      actions: [
        { dump: { dir: '/var/tmp', mode: 'stop', filter: 0x33 } },
        { exec: ['logger', '{rule} {pid} {path}'] },
      ],
      limit: { count: 10, windowMs: 86_400_000 },
    });
    expect(c.rules[1]).toMatchObject({ name: 'crashes', trigger: { crash: true } });
  });

  it('names file, line and column of each schema problem', () => {
    const f = fixture('schema-errors.yaml');
    expect(problems('schema-errors.yaml')).toEqual([
      `${f}:4:32: unknown key 'bogus'`,
      `${f}:5:16: memory: must be >= 0 (RSS at or above, MB (-m).)`,
      `${f}:5:28: for: not a valid value (seconds, or a string such as 500ms, 30s, 5m, 1h, 1d)`,
      `${f}:6:50: mode must be one of "snapshot", "stop"`,
      `${f}:7:5: 'window' is required here`,
      `${f}:11:5: actions: must NOT have fewer than 1 items`,
    ]);
  });

  it('names the place of a syntax error, in YAML and in JSON', () => {
    expect(problems('syntax-error.yaml')).toEqual([
      expect.stringMatching(/syntax-error\.yaml:4:1: .*Flow map/),
    ]);
    expect(problems('unknown-key.json')).toEqual([
      `${fixture('unknown-key.json')}:1:107: unknown key 'extra'`,
    ]);
  });

  it('refuses what the schema cannot express: duplicates, contradictions, ranges', () => {
    const f = fixture('semantic-errors.yaml');
    expect(problems('semantic-errors.yaml')).toEqual([
      `${f}:6:25: cpu and cpuBelow contradict each other: give one`,
      `${f}:8:5: a rule named 'twice' is defined twice`,
      `${f}:10:5: the trigger needs a condition (cpu, memory, threads, fds, sockets, crash…)`,
      `${f}:12:24: window must be between 1s and 30d, got 500ms`,
      `${f}:11:37: filter must be at most 0x1ff, got 0x3ff`,
      `${f}:15:16: crash cannot be combined with thresholds in one rule: make it a rule of its own`,
      `${f}:15:38: for must be at most 30d, got 31d`,
      `${f}:1:1: poll must be between 10ms and 1h, got 5ms`,
      `${f}:2:25: window must be between 1s and 30d, got 60d`,
      `${f}:2:11: bytes must be between 1MiB and 1PiB, got 10KiB`,
      `${f}:2:38: minFree must be at most 100%, got 150%`,
    ]);
  });

  it('reads the runtime triggers and actions, and refuses them on a rule not limited to their runtime', () => {
    const c = loadConfig(fixture('runtime.yaml'));
    expect(c.rules[0]).toMatchObject({
      match: { runtime: 'node', name: ['api-*'] },
      trigger: { heapUsed: 300, loopDelayMs: 2000, count: 2 },
      actions: [{ node: { dir: '/var/lib/tripdump', outputs: ['heap', 'report'], profileSeconds: 3 } }],
    });
    expect(c.rules[1]).toMatchObject({
      trigger: {
        gcHeap: 'gen2:500',
        exception: [],
        counter: { name: 'System.Runtime:cpu-usage', direction: 'below', value: 1 },
      },
      actions: [{ dump: { dir: '/var/lib/tripdump', dotnet: 'withheap' } }],
    });
    const f = fixture('runtime-errors.yaml');
    expect(problems('runtime-errors.yaml')).toEqual([
      `${f}:4:16: heapUsed is a Node.js trigger: the rule needs match.runtime: node`,
      `${f}:5:18: node actions need a Node.js process: the rule needs match.runtime: node`,
      `${f}:8:16: gcHeap is a .NET trigger: the rule needs match.runtime: dotnet`,
      `${f}:8:36: counter is a .NET trigger: the rule needs match.runtime: dotnet`,
      `${f}:8:16: gcHeap: unknown generation or heap 'gen3' (gen0, gen1, gen2, LOH or POH)`,
      `${f}:8:47: counter.name needs PROVIDER:COUNTER[pNN] (e.g. System.Runtime:gc-heap-size), got 'nocolon'`,
      `${f}:12:84: loopDelay is a Node.js trigger: the rule needs match.runtime: node`,
      `${f}:12:16: counter needs one of above or below`,
      `${f}:12:84: loopDelay must be between 1ms and 1h, got 2h`,
      `${f}:15:14: a crash rule cannot filter by runtime (the process is gone by the time it is matched)`,
    ]);
  });

  it('reads a missing file as an error naming it', () => {
    expect(() => loadConfig('/nonexistent/agent.yaml')).toThrow(/\/nonexistent\/agent\.yaml.*ENOENT/);
  });

  it('refuses a YAML alias bomb at its first alias, without expanding it', () => {
    expect(problems('alias-bomb.yaml')).toEqual([
      `${fixture('alias-bomb.yaml')}:3:8: the aliases expand to more than 100 nodes (an alias bomb?): write the values out`,
    ]);
  });

  it('refuses a file larger than the cap before parsing it, naming the file, its size and the cap', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tripdump-agent-config-'));
    try {
      // Valid YAML all along (a comment line repeated): only the size is wrong with it.
      const file = path.join(dir, 'big.yaml');
      const text = `rules: []\n${'# padding padding padding padding padding padding padding padding padding\n'.repeat(100_000)}`;
      writeFileSync(file, text);
      const size = Buffer.byteLength(text);
      expect(size).toBeGreaterThan(MAX_CONFIG_BYTES);
      expect(() => loadConfig(file)).toThrow(
        `${file}: ${size} bytes (${(size / 2 ** 20).toFixed(1)} MiB) is more than a rules file may be: at most 1048576 bytes (1 MiB)`,
      );
      // Not a regular file: refused without reading (/dev/zero never ends).
      expect(() => loadConfig('/dev/zero')).toThrow('/dev/zero: not a regular file');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says one problem per line: a line break quoted from the file cannot make a line of its own', () => {
    const f = fixture('line-break-key.yaml');
    const lines = problems('line-break-key.yaml');
    expect(lines).toEqual([`${f}:6:5: unknown key 'evil\\nline\\nforged'`]);
  });

  it('parses sizes and durations', () => {
    expect(parseSize('1.5GiB')).toBe(1.5 * 2 ** 30);
    expect(parseSize('2GB')).toBe(2e9);
    expect(parseSize(1234)).toBe(1234);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration(2)).toBe(2000);
  });
});
