// Pure TS logic: field selection, value checks and table rendering.
import { describe, expect, it } from 'vitest';
import { parseInteger } from '../../src/cli/common.js';
import { formatBytes, formatValue, table } from '../../src/cli/format.js';
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
    expect(() => parseInteger('--count', '1.5', 0)).toThrow("--count needs a whole number, got '1.5'");
    expect(() => parseInteger('--interval', '0', 1)).toThrow('--interval must be between 1');
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
