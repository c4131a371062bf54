/**
 * The history of a location as `fansync log` shows it (pure): which generations the meta prefix
 * still holds, what each changed, and how that is printed for people.
 */
import type { FileMap, Journal } from "./manifest.ts";
import { compareUtf8 } from "./paths.ts";
import { formatBytes } from "./units.ts";

/** How a rollback's heads (and lease) name their writer: readers tell a rollback by this prefix. */
export const ROLLBACK_WRITER = "rollback:";

/** What one generation changed relative to the one before it. */
export interface Changes {
  readonly added: readonly string[];
  readonly changed: readonly string[];
  readonly deleted: readonly string[];
}

/** One retained generation, as `fansync log` reports it. */
export interface GenerationInfo {
  readonly generation: number;
  readonly current: boolean;
  /** When it was published (journal or head time; else the manifest object's Last-Modified). */
  readonly time: string;
  /** Who published it, when recorded (the head for the current generation, the journal for others). */
  readonly writer: string | undefined;
  readonly files: number | undefined;
  readonly bytes: number | undefined;
  /** Whether its journal is still there (a generation with a huge delta never had one). */
  readonly journal: boolean;
  /**
   * Its changes, from the journal or by comparing manifests; undefined when unknown (the generation
   * before it is pruned and it has no journal).
   */
  readonly changes: Changes | undefined;
  /** The generation the changes are counted from, when it is not generation - 1 (a gap in the chain). */
  readonly since?: number | undefined;
  /**
   * Its journal when the generation before it is pruned: whether each put added or changed a path
   * cannot be told then.
   */
  readonly unsplit?: { readonly puts: readonly string[]; readonly deleted: readonly string[] } | undefined;
}

/** The generation number of a key under `<meta>manifests/` or `<meta>journal/`; undefined for other keys. */
export function parseGenerationKey(key: string, dir: string): number | undefined {
  if (!key.startsWith(dir)) return undefined;
  const m = /^(\d{12})\.(?:ndjson\.gz|json)$/.exec(key.slice(dir.length));
  const n = m ? Number(m[1]) : NaN;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** The changes a journal makes to the generation before it. */
export function changesOfJournal(prev: FileMap, j: Journal): Changes {
  const added: string[] = [];
  const changed: string[] = [];
  for (const e of j.puts) (prev.has(e.path) ? changed : added).push(e.path);
  return sortChanges({ added, changed, deleted: [...j.deletes] });
}

/** The changes between two full listings (a metadata-only change counts as changed). */
export function diffFileMaps(prev: FileMap, next: FileMap): Changes {
  const added: string[] = [];
  const changed: string[] = [];
  for (const [p, e] of next) {
    const o = prev.get(p);
    if (!o) added.push(p);
    else if (o.sha256 !== e.sha256 || o.size !== e.size || o.mtimeMs !== e.mtimeMs || o.mode !== e.mode) changed.push(p);
  }
  const deleted = [...prev.keys()].filter((p) => !next.has(p));
  return sortChanges({ added, changed, deleted });
}

function sortChanges(c: { added: string[]; changed: string[]; deleted: string[] }): Changes {
  return { added: c.added.sort(compareUtf8), changed: c.changed.sort(compareUtf8), deleted: c.deleted.sort(compareUtf8) };
}

/** Render the history for people, newest first; with `verbose`, up to `cap` changed paths per generation. */
export function formatHistory(location: string, rows: readonly GenerationInfo[], opts: { verbose: boolean; cap?: number; retained: readonly number[] }): string {
  const cap = opts.cap ?? 20;
  const lines: string[] = [];
  const r = opts.retained;
  lines.push(`${location}: ${r.length} generation(s) retained${r.length ? ` (${r[0]}..${r[r.length - 1]})` : ""}`);
  for (const g of rows) {
    const who = g.writer ? `  by ${g.writer}` : "";
    lines.push(`generation ${g.generation}${g.current ? " (head)" : ""}  ${g.time || "time unknown"}${who}`);
    const size = g.files === undefined ? "files unknown" : `${g.files} file(s), ${formatBytes(g.bytes ?? 0)}`;
    lines.push(`  ${size}; ${describeChanges(g)}`);
    if (!opts.verbose) continue;
    const list: string[] = [];
    if (g.changes) {
      for (const p of g.changes.added) list.push(`+ ${p}`);
      for (const p of g.changes.changed) list.push(`~ ${p}`);
      for (const p of g.changes.deleted) list.push(`- ${p}`);
    } else if (g.unsplit) {
      for (const p of g.unsplit.puts) list.push(`* ${p}`);
      for (const p of g.unsplit.deleted) list.push(`- ${p}`);
    }
    for (const l of list.slice(0, cap)) lines.push(`    ${l}`);
    if (list.length > cap) lines.push(`    ... and ${list.length - cap} more`);
  }
  return lines.join("\n") + "\n";
}

function describeChanges(g: GenerationInfo): string {
  const noJournal = "(no journal: full manifest only)";
  if (g.changes) {
    const c = g.changes;
    const counts = `+${c.added.length} added ~${c.changed.length} changed -${c.deleted.length} deleted`;
    const since = g.since !== undefined ? ` since generation ${g.since}` : "";
    return g.journal ? `${counts}${since}` : `${counts}${since} ${noJournal}`;
  }
  if (g.unsplit) {
    return `${g.unsplit.puts.length} added or changed -${g.unsplit.deleted.length} deleted (generation ${g.generation - 1} is pruned)`;
  }
  return noJournal;
}
