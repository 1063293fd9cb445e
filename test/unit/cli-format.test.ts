// Pure TS logic: field selection, value checks and table rendering.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseInteger } from '../../src/cli/common.js';
import { escapeControl, formatBytes, formatValue, table, toJson } from '../../src/cli/format.js';
import { dumpPath, historyPath, NAME_MAX } from '../../src/dump/naming.js';
import { UsageError } from '../../src/errors.js';
import { DEFAULT_FIELDS, FIELD_INFO, FIELD_NAMES } from '../../src/sampler/fields.js';
import { checkPid, parseFields } from '../../src/sampler/sampler.js';

describe('parseFields', () => {
  it('defaults to the stat fields and always keeps pid first', () => {
    expect(parseFields(undefined)).toEqual(DEFAULT_FIELDS);
    expect(DEFAULT_FIELDS.every((f) => FIELD_INFO[f].source === 'stat')).toBe(true);
    expect(parseFields(['rssBytes', 'comm'])).toEqual(['pid', 'comm', 'rssBytes']);
    expect(parseFields('all')).toEqual(FIELD_NAMES);
  });
  it('names the unknown field', () => {
    expect(() => parseFields(['rssBytes', 'rss'])).toThrow(/unknown field 'rss'/);
    expect(() => parseFields([])).toThrow(UsageError);
  });
});

describe('checks', () => {
  it('parseInteger names option and value', () => {
    expect(parseInteger('--count', '12', 0)).toBe(12);
    expect(() => parseInteger('--count', '1.5', 0, 10)).toThrow(
      "--count needs a whole number from 0 to 10, got '1.5'",
    );
    expect(() => parseInteger('--interval', '0', 1, 1000)).toThrow(
      '--interval must be from 1 to 1,000, got 0',
    );
  });
  it('checkPid', () => {
    expect(checkPid(1)).toBe(1);
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 31]) expect(() => checkPid(bad)).toThrow(UsageError);
  });
});

describe('format', () => {
  it('renders bytes, nulls and the table', () => {
    expect(formatBytes(512)).toBe('512B');
    expect(formatBytes(1536)).toBe('1.5K');
    expect(formatBytes(300 * 2 ** 20)).toBe('300M');
    expect(formatValue('rssBytes', null)).toBe('-');
    expect(formatValue('cpuPercent', 12.345)).toBe('12.3');
    const t = table(['pid', 'comm', 'rssBytes'], [{ pid: 7, comm: 'a) b', rssBytes: 4096 }]);
    expect(t.split('\n')).toEqual(['PID   RSS  COMM', '  7  4.0K  a) b']);
  });
});

describe('terminal safety', () => {
  it('escapes C0, DEL, C1 and bidirectional overrides, and leaves printable text alone', () => {
    expect(escapeControl('a\x1b[31mb\x07\n\x7f\x9b\u202e\u2066é✓')).toBe(
      'a\\x1b[31mb\\x07\\x0a\\x7f\\x9b\\u202e\\u2066é✓',
    );
    expect(formatValue('comm', 'x\ry')).toBe('x\\x0dy');
  });
  it('toJson is JSON a parser reads back unchanged, with nothing a terminal acts on', () => {
    const value = { comm: 'a\x1b]0;t\x07\x9b\u202e\u2028b' };
    const text = toJson(value);
    expect(JSON.parse(text)).toEqual(value);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the point of the check
    expect(text).not.toMatch(/[\x00-\x1f\x7f-\x9f\u202e\u2028]/);
  });
});

describe('dump names', () => {
  const when = new Date(2025, 0, 2, 3, 4, 5);
  it("are ProcDump 3.x's: <name>_<tag>_<time>.<pid> and <custom>.<pid>, with _<n> before the pid", () => {
    expect(dumpPath({ dir: '/d' }, 'app', 'cpu', 42, when, 0)).toBe('/d/app_cpu_250102_030405.42');
    expect(dumpPath({ dir: '/d' }, 'app', 'cpu', 42, when, 2)).toBe('/d/app_cpu_250102_030405_2.42');
    expect(dumpPath({ dir: '/d', file: 'core' }, 'app', 'cpu', 42, when, 0)).toBe('/d/core.42');
    expect(dumpPath({ dir: '/d', file: 'core' }, 'app', 'cpu', 42, when, 1)).toBe('/d/core_1.42');
  });
  it('cut a long process name to NAME_MAX bytes, keeping tag, time, counter and pid', () => {
    const name = path.basename(dumpPath({ dir: '/d' }, 'x'.repeat(4000), 'commit', 4194303, when, 17));
    expect(name.length).toBe(NAME_MAX);
    expect(name.endsWith('_commit_250102_030405_17.4194303')).toBe(true);
    const history = path.basename(historyPath('/h', `/d/${name}`));
    expect(Buffer.byteLength(history)).toBeLessThanOrEqual(NAME_MAX);
    expect(history.endsWith('_commit_250102_030405_17.4194303.json')).toBe(true);
  });
});
