// Reading the capture folder: one <id>.json per crash (written by the handler), its <id>.core beside.
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';

/** The metadata JSON the handler writes (docs/crash.md). */
export interface CrashRecord {
  version: number;
  id: string;
  pid: number;
  nsPid: number;
  uid: number;
  gid: number;
  signal: number;
  time: number;
  comm: string;
  hostname: string;
  mode: 'pipe' | 'socket';
  exe: string | null;
  cwd?: string;
  cgroup?: string;
  cmdline?: string[];
  status?: Record<string, string>;
  coreFile: string | null;
  coreSize: number;
  coreAllocated: number;
  coreStored: boolean;
  error?: string;
  capturedAt: string;
  captureMs: number;
}

export interface CrashEntry extends CrashRecord {
  metadataFile: string;
  /** The core file is still there (max-use cleanup or a user may have removed it). */
  present: boolean;
  /** Bytes the core takes on disk now (holes excluded). */
  diskSize: number;
}

const CAPTURE = /^[A-Za-z0-9_]+_\d+_\d+(-\d+)?\.json$/;

export function listCrashes(dir: string): CrashEntry[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: CrashEntry[] = [];
  for (const name of names) {
    if (!CAPTURE.test(name)) continue;
    const metadataFile = path.join(dir, name);
    let rec: CrashRecord;
    try {
      if (!lstatSync(metadataFile).isFile()) continue;
      rec = JSON.parse(readFileSync(metadataFile, 'utf8')) as CrashRecord;
    } catch {
      continue; // unreadable or half-written by someone else: not ours to list
    }
    let present = false;
    let diskSize = 0;
    if (rec.coreFile) {
      try {
        const st = lstatSync(rec.coreFile);
        present = st.isFile();
        diskSize = st.blocks * 512;
      } catch {
        present = false;
      }
    }
    out.push({ ...rec, metadataFile, present, diskSize });
  }
  return out.sort((a, b) => a.time - b.time || a.capturedAt.localeCompare(b.capturedAt));
}

/** By id, or the latest crash of a pid or an executable name (as coredumpctl matches). */
export function findCrash(dir: string, key: string): CrashEntry {
  const all = listCrashes(dir);
  const byId = all.find((c) => c.id === key);
  if (byId) return byId;
  const matches = /^\d+$/.test(key)
    ? all.filter((c) => c.pid === Number(key))
    : all.filter((c) => c.comm === key || path.basename(c.exe ?? '') === key);
  const last = matches.at(-1);
  if (!last) throw new UsageError(`no captured crash matches '${key}' in ${dir}`);
  return last;
}
