/**
 * Reading a location's retained generations: which manifests and journals the meta prefix holds,
 * an old generation's manifest, and the per-generation report `fansync log` prints. Read-only.
 * Listing the meta prefix is fine here: these are operator commands, never the puller's hot path.
 */
import { IntegrityError } from "../core/errors.ts";
import { changesOfJournal, diffFileMaps, type GenerationInfo, parseGenerationKey } from "../core/history.ts";
import type { Location } from "../core/location.ts";
import { metaPrefix } from "../core/location.ts";
import { applyJournal, type FileMap, type Journal, JOURNAL_MAX_BYTES, metaKeys, type ParsedManifest, parseJournal, parseSignedManifest, RETAINED_MANIFEST_MAX_BYTES, sha256Hex } from "../core/manifest.ts";
import type { ObjectStore } from "../adapters/object-store.ts";
import type { HeadState } from "./generation-reader.ts";

/** What the meta prefix holds, up to the head's generation. */
export interface Retained {
  /** Generations with a manifest, ascending, with the manifest object's Last-Modified. */
  readonly manifests: ReadonlyMap<number, Date | undefined>;
  /** Generations with a journal. */
  readonly journals: ReadonlySet<number>;
}

/**
 * List the retained manifests and journals. Keys above the head's generation (a run that died
 * before its head) are left out: they were never published.
 */
export async function listRetained(store: ObjectStore, loc: Location, head: HeadState["head"], signal?: AbortSignal): Promise<Retained> {
  const meta = metaPrefix(loc);
  const mdir = `${meta}manifests/`;
  const jdir = `${meta}journal/`;
  const [{ keys: ms }, { keys: js }] = await Promise.all([store.list(mdir, { signal }), store.list(jdir, { signal })]);
  const manifests = new Map<number, Date | undefined>();
  for (const o of ms) {
    const g = parseGenerationKey(o.key, mdir);
    if (g !== undefined && g <= head.generation && o.key === metaKeys.manifest(meta, g)) manifests.set(g, o.lastModified);
  }
  // The head's own manifest is there by construction (the head was read); a listing that misses it
  // is an incomplete listing, not a missing generation.
  if (!manifests.has(head.generation)) manifests.set(head.generation, undefined);
  const journals = new Set<number>();
  for (const o of js) {
    const g = parseGenerationKey(o.key, jdir);
    if (g !== undefined && g <= head.generation && o.key === metaKeys.journal(meta, g)) journals.add(g);
  }
  return { manifests: new Map([...manifests].sort((a, b) => a[0] - b[0])), journals };
}

/**
 * Read a retained generation's manifest (and the signature its header carries); undefined when it
 * is gone. Only the head's manifest has a sha256 to check against; an older one is checked for its
 * format, its generation and every entry, and, by rollback, against its signature.
 */
export async function readGenerationManifest(store: ObjectStore, loc: Location, generation: number, signal?: AbortSignal): Promise<ParsedManifest | undefined> {
  const res = await store.get(metaKeys.manifest(metaPrefix(loc), generation), { maxBytes: RETAINED_MANIFEST_MAX_BYTES, ...(signal ? { signal } : {}) });
  if (res.status === "not-found") return undefined;
  if (res.status !== "ok") throw new IntegrityError(`unexpected answer reading the manifest of generation ${generation}: ${res.status}`);
  return parseSignedManifest(res.body, sha256Hex(res.body), generation);
}

/** Read a journal; undefined when it is gone. */
async function readJournal(store: ObjectStore, loc: Location, generation: number, signal?: AbortSignal): Promise<Journal | undefined> {
  const res = await store.get(metaKeys.journal(metaPrefix(loc), generation), { maxBytes: JOURNAL_MAX_BYTES, ...(signal ? { signal } : {}) });
  if (res.status === "not-found") return undefined;
  if (res.status !== "ok") throw new IntegrityError(`unexpected answer reading the journal of generation ${generation}: ${res.status}`);
  return parseJournal(res.body, generation);
}

/**
 * The newest `limit` retained generations, newest first. Costs one full manifest (the generation
 * before the oldest shown) plus one journal per generation; a generation without a journal, or
 * after a gap, costs its manifest instead.
 */
export async function readHistory(store: ObjectStore, loc: Location, hs: HeadState, retained: Retained, opts: { limit: number; signal?: AbortSignal }): Promise<GenerationInfo[]> {
  const { head } = hs;
  const gens = [...retained.manifests.keys()];
  const shown = gens.slice(Math.max(0, gens.length - opts.limit));
  const first = shown[0];
  if (first === undefined) return [];
  // The state before the oldest shown generation, to count what it changed.
  let state: { gen: number; files: FileMap } | undefined;
  if (first === 1) state = { gen: 0, files: new Map() };
  else if (retained.manifests.has(first - 1)) {
    const files = (await readGenerationManifest(store, loc, first - 1, opts.signal))?.files;
    if (files) state = { gen: first - 1, files };
  }
  const rows: GenerationInfo[] = [];
  for (const g of shown) {
    const hasJournal = retained.journals.has(g);
    const j = hasJournal ? await readJournal(store, loc, g, opts.signal) : undefined;
    const isHead = g === head.generation;
    const base = {
      generation: g,
      current: isHead,
      time: (isHead ? head.time : j?.time) || (retained.manifests.get(g)?.toISOString() ?? ""),
      writer: (isHead ? head.writer : j?.writer) || undefined,
      journal: j !== undefined,
    };
    if (j && state?.gen === g - 1) {
      // A journal is the delta from generation - 1 only when that manifest exists: a replicated
      // region that jumped several generations wrote one journal holding the net delta.
      const changes = changesOfJournal(state.files, j);
      state = { gen: g, files: applyJournal(state.files, j) };
      rows.push({ ...base, ...sizeOf(state.files), changes });
      continue;
    }
    const files = (await readGenerationManifest(store, loc, g, opts.signal))?.files;
    if (!files) {
      // Pruned between the listing and now.
      rows.push({ ...base, files: undefined, bytes: undefined, changes: undefined });
      state = undefined;
      continue;
    }
    if (state) rows.push({ ...base, ...sizeOf(files), changes: diffFileMaps(state.files, files), ...(state.gen !== g - 1 ? { since: state.gen } : {}) });
    else if (j) rows.push({ ...base, ...sizeOf(files), changes: undefined, unsplit: { puts: j.puts.map((e) => e.path), deleted: [...j.deletes] } });
    else rows.push({ ...base, ...sizeOf(files), changes: undefined });
    state = { gen: g, files };
  }
  return rows.reverse();
}

function sizeOf(files: FileMap): { files: number; bytes: number } {
  let bytes = 0;
  for (const e of files.values()) bytes += e.size;
  return { files: files.size, bytes };
}
