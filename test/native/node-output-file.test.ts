// createFileSafely, the streaming writer every output goes through (the heap snapshot streams into it):
// 0600, no name until commit, nothing left behind uncommitted, EEXIST at once, JSON string contents
// decoded natively.
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createFileSafely, writeFileSafely } from '../../src/actions/history.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tripdump-output-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('createFileSafely', () => {
  it('streams, names the file only on commit, mode 0600', async () => {
    const file = path.join(dir, 'stream.txt');
    const f = createFileSafely(file);
    await f.write('hello ');
    await f.writeJsonText(Buffer.from(String.raw`{\"a\":\"\u00e9\"}\n`));
    expect(readdirSync(dir)).toEqual([]); // an unnamed O_TMPFILE until commit
    f.commit();
    f.close();
    expect(readFileSync(file, 'utf8')).toBe('hello {"a":"é"}\n');
    expect(f.size).toBe(Buffer.byteLength('hello {"a":"é"}\n'));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    rmSync(file);
  });

  it('leaves nothing when closed uncommitted, or when the JSON text is malformed', async () => {
    const f = createFileSafely(path.join(dir, 'dropped.txt'));
    await f.write('x'.repeat(100_000));
    f.close();
    const g = createFileSafely(path.join(dir, 'bad.txt'));
    const e = await g.writeJsonText(Buffer.from(String.raw`ok \q`)).catch((x: unknown) => x);
    expect((e as { code?: string }).code).toBe('EILSEQ');
    g.close();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses an existing name (a symlink too) at once, and replaces it only when asked', async () => {
    const file = path.join(dir, 'taken.txt');
    writeFileSync(file, 'mine');
    expect(() => createFileSafely(file)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    const link = path.join(dir, 'link.txt');
    symlinkSync(path.join(dir, 'elsewhere.txt'), link);
    expect(() => createFileSafely(link)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    await writeFileSafely(file, 'theirs', true);
    expect(readFileSync(file, 'utf8')).toBe('theirs');
    expect(readdirSync(dir).sort()).toEqual(['link.txt', 'taken.txt']);
    rmSync(file);
    rmSync(link);
  });
});
