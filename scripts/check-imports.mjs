#!/usr/bin/env node
// Checks the import directions between the rooms of src/ (ARCHITECTURE.md, "Allowed imports"): every
// import and export-from of every .ts file under the root is mapped to the room of the importing file and
// the room of the imported one, and judged against ALLOWED below. It also reports cycles between rooms.
//
//   node scripts/check-imports.mjs [--root DIR] [--strict] [--allow 'FILE -> SPECIFIER']...
//
// --root    the tree to check (default: this checkout's src/); FILE paths are relative to it. The
//           temporary allowlist below is about this checkout's src/ and applies only there.
// --strict  ignore KNOWN_VIOLATIONS (the temporary allowlist below)
// --allow   one more allowed import, in the allowlist's form: 'actions/dump.ts -> ../runtimes/dotnet/dump.js'
//
// Prints `file:line: room A may not import room B (specifier)` per violation, `cycle: …` per cycle, and
// exits 1 if there is any; an allowlist entry that matches no import is an error too, so the list can
// only shrink. Specifiers are read with the TypeScript compiler's parser (the installed `typescript`), not
// a regex: `import type`, `export … from`, `import x = require()`, `import()` and `typeof import()` are all
// dependencies, and strings or comments that look like imports are not.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

// Rooms that any room may import: they import nothing of tripdump themselves.
const LEAVES = ['errors', 'abort', 'plural'];
// Which rooms each room may import, besides itself and LEAVES. A top-level file src/NAME.ts is room NAME,
// any file under src/DIR/ is room DIR. cli and index are the two front doors: nothing imports either.
// Keep in step with ARCHITECTURE.md.
const ALLOWED = {
  cli: ['agent', 'monitor', 'actions', 'triggers', 'runtimes', 'crash', 'sampler', 'dump', 'native'],
  index: ['agent', 'monitor', 'actions', 'triggers', 'runtimes', 'crash', 'sampler', 'dump', 'native'],
  agent: ['monitor', 'actions', 'triggers', 'runtimes', 'crash', 'sampler', 'dump', 'native'],
  monitor: ['triggers', 'actions', 'sampler', 'dump', 'native'],
  runtimes: ['actions', 'triggers', 'sampler', 'dump', 'native'],
  actions: ['dump', 'native'],
  triggers: ['sampler', 'native'],
  crash: ['native'],
  sampler: ['native'],
  dump: ['native'],
  native: [],
  errors: [],
  abort: [],
  plural: [],
};
// Sub-rooms that must not import each other although they share a room: each runtime stands alone.
const SEPARATE = [['runtimes/dotnet', 'runtimes/node']];

// TEMPORARY: the imports that break the rules today (ARCHITECTURE.md, "Known violations"), so the check can
// run in lint now. The refactor removes them one by one, and each removed import must leave this list
// (an entry that matches nothing fails the check). Never add to it: fix the import instead.
const KNOWN_VIOLATIONS = [
  'actions/action.ts -> ../sampler/fields.js',
  'actions/action.ts -> ../triggers/trigger.js',
  'actions/dump.ts -> ../runtimes/dotnet/dump.js',
  'actions/dump.ts -> ../triggers/trigger.js',
  'dump/core.ts -> ../sampler/sampler.js',
  'native.ts -> ./dump/core.js',
  'native.ts -> ./sampler/fields.js',
  'triggers/signal.ts -> ../dump/core.js',
  'triggers/trigger.ts -> ../dump/core.js',
];

const ROOMS = Object.keys(ALLOWED);
const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src');

function allowedTargets(room) {
  if (LEAVES.includes(room)) return new Set([room]);
  return new Set([room, ...LEAVES, ...ALLOWED[room]]);
}

// The table itself must be acyclic, or the rule "data flows one way" would be void.
function tableCycle() {
  const state = new Map();
  const visit = (room, trail) => {
    if (state.get(room) === 'done') return null;
    if (state.get(room) === 'open') return [...trail.slice(trail.indexOf(room)), room];
    state.set(room, 'open');
    for (const next of allowedTargets(room)) {
      if (next === room || !(next in ALLOWED)) continue;
      const found = visit(next, [...trail, room]);
      if (found) return found;
    }
    state.set(room, 'done');
    return null;
  };
  for (const room of ROOMS) {
    const found = visit(room, []);
    if (found) return found;
  }
  return null;
}

function listTs(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listTs(full));
    else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(full);
  }
  return out.sort();
}

/** Every module specifier `file` depends on, with its 1-based line. */
export function importsOf(file) {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found = [];
  const add = (node) => {
    if (!node || !ts.isStringLiteralLike(node)) return;
    const { line } = source.getLineAndCharacterOfPosition(node.getStart(source));
    found.push({ specifier: node.text, line: line + 1 });
  };
  const walk = (node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference))
      add(node.moduleReference.expression);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword)
      add(node.arguments[0]);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal);
    ts.forEachChild(node, walk);
  };
  walk(source);
  return found;
}

// 'actions/dump.ts' -> { room: 'actions', part: 'actions' }; 'runtimes/node/x.ts' -> part 'runtimes/node'.
function roomOf(rel) {
  const parts = rel.split('/');
  if (parts.length === 1) return { room: parts[0].replace(/\.(ts|js|json)$/, ''), part: parts[0] };
  return { room: parts[0], part: parts.length > 2 ? `${parts[0]}/${parts[1]}` : parts[0] };
}

function parseArgs(argv) {
  const opts = { root: SRC, strict: false, allow: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--root') opts.root = path.resolve(value());
    else if (a === '--strict') opts.strict = true;
    else if (a === '--allow') opts.allow.push(normalizeEntry(value()));
    else
      throw new Error(
        `unknown argument ${JSON.stringify(a)} (expected --root DIR, --strict, --allow 'FILE -> SPECIFIER')`,
      );
  }
  return opts;
}

function normalizeEntry(entry) {
  const m = /^\s*(\S+)\s*->\s*(\S+)\s*$/.exec(entry);
  if (!m) throw new Error(`--allow ${JSON.stringify(entry)}: expected 'FILE -> SPECIFIER'`);
  return `${m[1]} -> ${m[2]}`;
}

export function check({ root, strict = false, allow = [] }) {
  const problems = [];
  const cycleTrail = tableCycle();
  if (cycleTrail) problems.push(`ALLOWED table: cycle ${cycleTrail.join(' → ')} (scripts/check-imports.mjs)`);
  const known = strict || path.resolve(root) !== SRC ? [] : KNOWN_VIOLATIONS;
  const allowlist = new Map([...known, ...allow].map((e) => [e, 0]));
  // Room graph of the imports that are not on the allowlist: room -> room -> first import seen.
  const edges = new Map();
  for (const file of listTs(root)) {
    const rel = path.relative(root, file).split(path.sep).join('/');
    const from = roomOf(rel);
    if (!(from.room in ALLOWED)) {
      problems.push(
        `${rel}:1: room ${from.room} is not in the table of rooms (scripts/check-imports.mjs ALLOWED)`,
      );
      continue;
    }
    const allowed = allowedTargets(from.room);
    for (const { specifier, line } of importsOf(file)) {
      if (!specifier.startsWith('.')) continue; // node: builtins and packages
      const target = path
        .relative(root, path.resolve(path.dirname(file), specifier))
        .split(path.sep)
        .join('/');
      const key = `${rel} -> ${specifier}`;
      const listed = allowlist.has(key);
      if (listed) allowlist.set(key, allowlist.get(key) + 1);
      if (target.startsWith('..')) {
        if (!listed)
          problems.push(`${rel}:${line}: room ${from.room} may not import outside the root (${specifier})`);
        continue;
      }
      const to = roomOf(target);
      let problem = null;
      if (!(to.room in ALLOWED))
        problem = `room ${from.room} may not import room ${to.room}, which is in no table`;
      else if (!allowed.has(to.room)) problem = `room ${from.room} may not import room ${to.room}`;
      else if (from.part !== to.part && SEPARATE.some((s) => s.includes(from.part) && s.includes(to.part)))
        problem = `room ${from.part} may not import room ${to.part}`;
      if (problem && !listed) problems.push(`${rel}:${line}: ${problem} (${specifier})`);
      if (listed || from.room === to.room) continue;
      if (!edges.has(from.room)) edges.set(from.room, new Map());
      if (!edges.get(from.room).has(to.room))
        edges.get(from.room).set(to.room, `${rel}:${line} ${specifier}`);
    }
  }
  for (const [entry, hits] of allowlist)
    if (hits === 0) problems.push(`allowlist: '${entry}' matches no import any more: remove it`);
  for (const cycle of roomCycles(edges)) problems.push(`cycle: ${cycle}`);
  return problems;
}

// The cycles of the room graph: its strongly connected groups (Tarjan), then cycles within each, one line
// per cycle naming one import per edge.
function roomCycles(edges) {
  let counter = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const groups = [];
  const connect = (v) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) === index.get(v)) {
      const group = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      if (group.length > 1) groups.push(group.sort());
    }
  };
  for (const v of [...edges.keys()].sort()) if (!index.has(v)) connect(v);
  // Each group's cycles: the shortest way round through each of its rooms, the same cycle reported once.
  const cycles = new Map();
  for (const group of groups) {
    for (const start of group) {
      const prev = new Map([[start, null]]);
      const queue = [start];
      let last = null;
      while (queue.length > 0 && last === null) {
        const v = queue.shift();
        for (const w of [...(edges.get(v)?.keys() ?? [])].sort()) {
          if (!group.includes(w)) continue;
          if (w === start) {
            last = v;
            break;
          }
          if (!prev.has(w)) {
            prev.set(w, v);
            queue.push(w);
          }
        }
      }
      const trail = [];
      for (let v = last; v !== null; v = prev.get(v)) trail.unshift(v);
      // The same cycle from another room is a rotation: keyed by its rooms in order from the smallest.
      const first = trail.indexOf([...trail].sort()[0]);
      const key = [...trail.slice(first), ...trail.slice(0, first)].join(' ');
      if (cycles.has(key)) continue;
      const round = [...trail.slice(first), ...trail.slice(0, first)];
      round.push(round[0]);
      const via = round.slice(1).map((to, i) => `${round[i]} → ${to}: ${edges.get(round[i]).get(to)}`);
      cycles.set(key, `${round.join(' → ')} (${via.join('; ')})`);
    }
  }
  return [...cycles.values()];
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`check-imports: ${e.message}`);
    process.exit(2);
  }
  const problems = check(opts);
  for (const p of problems) console.log(p);
  process.exit(problems.length > 0 ? 1 : 0);
}
