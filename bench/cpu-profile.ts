/**
 * Summarises a V8 .cpuprofile (written by `node --cpu-prof`) for the benchmark report: where the
 * relay's time went, by function (self and inclusive time) and by area (src/ directory, package,
 * Node internals, GC, idle). Locations in dist/ are mapped back to src/*.ts through the
 * build's source maps.
 *
 *   npx tsx bench/cpu-profile.ts FILE.cpuprofile [--top N] [--json]
 */
import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { format, isEntryPoint, runMain, wholeNumber } from './common.js';

interface CallFrame {
  functionName: string;
  url: string;
  /** 0-based. */
  lineNumber: number;
  /** 0-based. */
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  /** Microseconds since the previous sample. */
  timeDeltas: number[];
}

export interface FunctionTime {
  /** "name (src/delivery/scheduler.ts:71)" */
  function: string;
  area: string;
  ms: number;
  /** Share of the busy (non-idle) time. */
  percent: number;
}

export interface ProfileSummary {
  file: string;
  wallMs: number;
  /** Time the main thread was sampled doing something (wall minus idle). */
  busyMs: number;
  idleMs: number;
  gcMs: number;
  /** "(program)": native code V8 cannot attribute to a JS function (libuv, syscalls, bindings). */
  programMs: number;
  /** Self time by area: where the CPU instructions were (node internals and natives on their own). */
  byArea: Array<{ area: string; ms: number; percent: number }>;
  /**
   * By the innermost frame in src/ or a package: the code whose work it was, with the Node
   * internals and natives it called (streams, sockets, crypto, SQLite) counted as its own.
   */
  byOwner: Array<{ area: string; ms: number; percent: number }>;
  topSelf: FunctionTime[];
  /** By the innermost src/ function on the stack (libraries it called included); "no src/ frame" otherwise. */
  topBySrcFrame: FunctionTime[];
  /** Time with the function anywhere on the stack, for functions in src/ only. */
  topInclusiveSrc: FunctionTime[];
}

const SPECIAL = new Set(['(root)', '(idle)', '(program)', '(garbage collector)']);

/** Decodes a source map's mappings just enough to map a generated line and column back. */
class SourceMapper {
  private readonly maps = new Map<string, { sources: string[]; lines: number[][][] } | null>();

  /** "src/x.ts:LINE" (relative to `root`) for a position in a dist/ file with a map, else null. */
  original(jsFile: string, root: string, line: number, column: number): string | null {
    const map = this.load(jsFile, root);
    const segments = map?.lines[line];
    if (!map || !segments || segments.length === 0) return null;
    let best: number[] | undefined;
    for (const segment of segments) {
      if ((segment[0] ?? 0) <= column) best = segment;
      else break;
    }
    best ??= segments[0];
    if (!best || best.length < 4) return null;
    const source = map.sources[best[1] ?? 0];
    return source === undefined ? null : `${source}:${(best[2] ?? 0) + 1}`;
  }

  private load(jsFile: string, root: string): { sources: string[]; lines: number[][][] } | null {
    if (this.maps.has(jsFile)) return this.maps.get(jsFile) ?? null;
    let parsed: { sources: string[]; lines: number[][][] } | null = null;
    try {
      const raw = JSON.parse(readFileSync(`${jsFile}.map`, 'utf8')) as { sources: string[]; sourceRoot?: string; mappings: string };
      const dir = jsFile.slice(0, jsFile.lastIndexOf('/'));
      const sources = raw.sources.map((source) => relative(root, new URL(source, `file://${dir}/`).pathname));
      parsed = { sources, lines: decodeMappings(raw.mappings) };
    } catch {
      parsed = null;
    }
    this.maps.set(jsFile, parsed);
    return parsed;
  }
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Source map v3 mappings: per generated line, segments [column, source, line, column] (absolute). */
function decodeMappings(mappings: string): number[][][] {
  const lines: number[][][] = [];
  let source = 0;
  let originalLine = 0;
  let originalColumn = 0;
  for (const lineText of mappings.split(';')) {
    const segments: number[][] = [];
    let column = 0;
    for (const segmentText of lineText.split(',')) {
      if (!segmentText) continue;
      const values: number[] = [];
      let value = 0;
      let shift = 0;
      for (const char of segmentText) {
        const digit = BASE64.indexOf(char);
        value += (digit & 31) << shift;
        if (digit & 32) {
          shift += 5;
        } else {
          values.push(value & 1 ? -(value >>> 1) : value >>> 1);
          value = 0;
          shift = 0;
        }
      }
      column += values[0] ?? 0;
      if (values.length >= 4) {
        source += values[1] ?? 0;
        originalLine += values[2] ?? 0;
        originalColumn += values[3] ?? 0;
        segments.push([column, source, originalLine, originalColumn]);
      } else {
        segments.push([column]);
      }
    }
    lines.push(segments);
  }
  return lines;
}

export function summarizeCpuProfile(file: string, projectRoot: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const mapper = new SourceMapper();
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  const described = new Map<number, { key: string; area: string }>();
  const describe = (node: ProfileNode): { key: string; area: string } => {
    let found = described.get(node.id);
    if (found) return found;
    const { functionName, url, lineNumber, columnNumber } = node.callFrame;
    const name = functionName || '(anonymous)';
    if (SPECIAL.has(name) && !url) found = { key: name, area: name };
    else if (!url) found = { key: `${name} (native)`, area: 'native (V8 builtins, C++ bindings)' };
    else if (url.startsWith('node:')) found = { key: `${name} (${url}:${lineNumber + 1})`, area: 'node internals' };
    else {
      const path = url.startsWith('file://') ? fileURLToPath(url) : url;
      // The build the profile came from may be another checkout: its root is what precedes /dist/.
      const distAt = path.lastIndexOf('/dist/');
      const root = distAt !== -1 && !path.includes('/node_modules/') ? path.slice(0, distAt + 1) : projectRoot;
      const inProject = relative(root, path);
      const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(inProject);
      if (packageMatch) {
        found = { key: `${name} (${inProject.slice(inProject.indexOf(packageMatch[1] ?? ''))}:${lineNumber + 1})`, area: `node_modules/${packageMatch[1]}` };
      } else if (inProject.startsWith('dist/')) {
        const original = mapper.original(path, root, lineNumber, columnNumber) ?? `${inProject}:${lineNumber + 1}`;
        const dir = /^(src\/[^/]+)\//.exec(original)?.[1] ?? (original.startsWith('src/') ? 'src (top level)' : 'dist');
        found = { key: `${name} (${original})`, area: dir };
      } else {
        found = { key: `${name} (${inProject}:${lineNumber + 1})`, area: 'other' };
      }
    }
    described.set(node.id, found);
    return found;
  };

  const self = new Map<string, { area: string; us: number }>();
  const inclusive = new Map<string, { area: string; us: number }>();
  const areas = new Map<string, number>();
  const owners = new Map<string, number>();
  const srcFrames = new Map<string, { area: string; us: number }>();
  const isOwnerArea = (area: string): boolean => area.startsWith('src') || area.startsWith('node_modules/');
  let totalUs = 0;
  let idleUs = 0;
  let gcUs = 0;
  let programUs = 0;
  const seen = new Set<string>();
  for (let k = 0; k < profile.samples.length; k++) {
    const delta = profile.timeDeltas[k] ?? 0;
    if (delta <= 0) continue;
    const node = byId.get(profile.samples[k] ?? -1);
    if (!node) continue;
    totalUs += delta;
    const { key, area } = describe(node);
    if (key === '(idle)') {
      idleUs += delta;
      continue;
    }
    if (key === '(garbage collector)') gcUs += delta;
    if (key === '(program)') programUs += delta;
    const entry = self.get(key) ?? { area, us: 0 };
    entry.us += delta;
    self.set(key, entry);
    areas.set(area, (areas.get(area) ?? 0) + delta);
    let owner: string | null = SPECIAL.has(key) ? key : null;
    let srcFrame: { key: string; area: string } | null = null;
    // Inclusive: each function once per sample, however deep it recurses.
    seen.clear();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id);
      if (!frame) break;
      const described = describe(frame);
      if (owner === null && isOwnerArea(described.area)) owner = described.area;
      if (srcFrame === null && described.area.startsWith('src')) srcFrame = described;
      if (seen.has(described.key)) continue;
      seen.add(described.key);
      const total = inclusive.get(described.key) ?? { area: described.area, us: 0 };
      total.us += delta;
      inclusive.set(described.key, total);
    }
    owner ??= '(node internals and natives only: event loop, sockets)';
    owners.set(owner, (owners.get(owner) ?? 0) + delta);
    const srcKey = srcFrame?.key ?? (SPECIAL.has(key) ? key : `(no src/ frame) ${owner}`);
    const srcEntry = srcFrames.get(srcKey) ?? { area: srcFrame?.area ?? owner, us: 0 };
    srcEntry.us += delta;
    srcFrames.set(srcKey, srcEntry);
  }
  const busyUs = totalUs - idleUs;
  const percent = (us: number): number => (busyUs > 0 ? (us / busyUs) * 100 : 0);
  const rank = (entries: Map<string, { area: string; us: number }>, filter: (area: string) => boolean): FunctionTime[] =>
    [...entries.entries()]
      .filter(([, value]) => filter(value.area))
      .sort((a, b) => b[1].us - a[1].us)
      .slice(0, top)
      .map(([key, value]) => ({ function: key, area: value.area, ms: value.us / 1000, percent: percent(value.us) }));
  return {
    file,
    wallMs: (profile.endTime - profile.startTime) / 1000,
    busyMs: busyUs / 1000,
    idleMs: idleUs / 1000,
    gcMs: gcUs / 1000,
    programMs: programUs / 1000,
    byArea: [...areas.entries()].sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, ms: us / 1000, percent: percent(us) })),
    byOwner: [...owners.entries()].sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, ms: us / 1000, percent: percent(us) })),
    topSelf: rank(self, () => true),
    topBySrcFrame: rank(srcFrames, () => true),
    topInclusiveSrc: rank(inclusive, (area) => area.startsWith('src')),
  };
}

export function profileLines(summary: ProfileSummary): string[] {
  const share = (ms: number): string => `${format(ms, 0).padStart(7)} ms ${format((ms / summary.busyMs) * 100, 1, '%').padStart(6)}`;
  return [
    `CPU profile of the relay's main thread (${summary.file})`,
    `  whole run (startup, warm-up and shutdown included): ${format(summary.wallMs / 1000, 2, ' s')} wall, ` +
      `${format(summary.busyMs / 1000, 2, ' s')} busy (${format((summary.busyMs / summary.wallMs) * 100, 0, '%')}), ` +
      `${format(summary.idleMs / 1000, 2, ' s')} idle; GC ${format(summary.gcMs, 0, ' ms')}, (program) ${format(summary.programMs, 0, ' ms')}`,
    '  percentages are of the busy time',
    '',
    '  by area (self time: where the instructions ran)',
    ...summary.byArea.filter(({ percent }) => percent >= 0.5).map(({ area, ms }) => `    ${share(ms)}  ${area}`),
    '',
    '  by owner (innermost src/ or package frame; the Node internals and natives it called count as its own)',
    ...summary.byOwner.filter(({ percent }) => percent >= 0.5).map(({ area, ms }) => `    ${share(ms)}  ${area}`),
    '',
    '  top functions by self time (a native call such as a SQLite statement counts to its JS caller)',
    ...summary.topSelf.map(({ function: name, ms }) => `    ${share(ms)}  ${name}`),
    '',
    '  by innermost src/ function on the stack (the library and Node work it called included)',
    ...summary.topBySrcFrame.map(({ function: name, ms }) => `    ${share(ms)}  ${name}`),
    '',
    '  src/ functions by inclusive time (the function and everything it calls)',
    ...summary.topInclusiveSrc.map(({ function: name, ms }) => `    ${share(ms)}  ${name}`),
  ];
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: { top: { type: 'string', default: '25' }, json: { type: 'boolean', default: false } },
  });
  const file = positionals[0];
  if (!file || !existsSync(file)) {
    console.error('Usage: npx tsx bench/cpu-profile.ts FILE.cpuprofile [--top N] [--json]');
    return 2;
  }
  const summary = summarizeCpuProfile(file, fileURLToPath(new URL('..', import.meta.url)), wholeNumber(values.top, '--top', 1));
  console.log(values.json ? JSON.stringify(summary, null, 2) : profileLines(summary).join('\n'));
  return 0;
}

if (isEntryPoint(import.meta.url)) runMain(main);
