// The agent's limits as pure logic, on a clock and a disk the test controls (the real disk floor is tested
// end to end on a small tmpfs in test/native/agent.test.ts).
import { describe, expect, it } from 'vitest';
import type { Rule } from '../../src/agent/config.js';
import { Limiter } from '../../src/agent/limits.js';

const rule = (name: string, limit?: { count: number; windowMs: number }): Rule => ({
  name,
  match: { comm: ['x'] },
  trigger: { cpu: 1, forMs: 0, cooldownMs: 0, count: 1 },
  actions: [{ dump: { dir: '/d' } }],
  ...(limit ? { limit } : {}),
});

function setup(
  limits: ConstructorParameters<typeof Limiter>[0],
  free = 100 * 2 ** 30,
  total = 200 * 2 ** 30,
) {
  const clock = { now: 1_000_000 };
  const disk = { free, total };
  const l = new Limiter(
    limits,
    () => clock.now,
    () => disk,
  );
  return { l, clock, disk };
}

describe('Limiter', () => {
  it('admits at most count firings of a rule in any sliding window', () => {
    const { l, clock } = setup({ windowMs: 3_600_000, minFree: { bytes: 0 } });
    const r = rule('r', { count: 3, windowMs: 60_000 });
    const results = [];
    for (let i = 0; i < 50; i++) {
      results.push(l.admit(r, [], 0)?.reason ?? 'ok');
      clock.now += 100;
    }
    expect(results.filter((x) => x === 'ok')).toHaveLength(3);
    expect(results.slice(3).every((x) => x === 'rule-limit')).toBe(true);
    // The window slides: 60 s after the first firing, one more is allowed, not three.
    clock.now = 1_000_000 + 60_000;
    expect(l.admit(r, [], 0)).toBeUndefined();
    expect(l.admit(r, [], 0)?.reason).toBe('rule-limit');
    // Other rules are not affected.
    expect(l.admit(rule('other', { count: 1, windowMs: 60_000 }), [], 0)).toBeUndefined();
  });

  it('caps dump bytes per window across rules, counting the estimate of the next dump', () => {
    const { l, clock } = setup({ bytes: 1000, windowMs: 10_000, minFree: { bytes: 0 } });
    expect(l.admit(rule('a'), ['/d'], 600)).toBeUndefined();
    l.wrote(600);
    expect(l.admit(rule('b'), ['/d'], 600)?.reason).toBe('host-bytes');
    // Rules without dumps are not held by the byte cap.
    expect(l.admit(rule('b'), [], 600)).toBeUndefined();
    expect(l.admit(rule('b'), ['/d'], 300)).toBeUndefined();
    clock.now += 10_001;
    expect(l.bytesInWindow()).toBe(0);
    expect(l.admit(rule('b'), ['/d'], 900)).toBeUndefined();
  });

  it('keeps a free-space floor, in bytes or as a share of the filesystem', () => {
    const { l, disk } = setup({ windowMs: 1000, minFree: { fraction: 0.1 } }, 30, 200);
    expect(l.admit(rule('a'), ['/d'], 5)).toBeUndefined(); // 30 - 5 ≥ 20
    expect(l.admit(rule('a'), ['/d'], 11)?.reason).toBe('disk-floor'); // 30 - 11 < 20
    disk.free = 19;
    expect(l.admit(rule('a'), ['/d'], 0)?.message).toMatch(/\/d has 19 bytes free/);
  });

  it('a refused firing does not use up the rule window', () => {
    const { l, disk } = setup({ windowMs: 1000, minFree: { bytes: 100 } }, 50);
    const r = rule('r', { count: 1, windowMs: 60_000 });
    expect(l.admit(r, ['/d'], 0)?.reason).toBe('disk-floor');
    disk.free = 1000;
    expect(l.admit(r, ['/d'], 0)).toBeUndefined();
  });

  it('keeps the counts of rules that survive a reload and forgets removed ones', () => {
    const { l } = setup({ windowMs: 1000, minFree: { bytes: 0 } });
    const keep = rule('keep', { count: 1, windowMs: 60_000 });
    const gone = rule('gone', { count: 1, windowMs: 60_000 });
    l.admit(keep, [], 0);
    l.admit(gone, [], 0);
    l.reconfigure({ windowMs: 1000, minFree: { bytes: 0 } }, [keep]);
    expect(l.admit(keep, [], 0)?.reason).toBe('rule-limit');
    expect(l.admit(gone, [], 0)).toBeUndefined();
  });
});
