/**
 * The puller's own state: which generation of which source the docroot holds (`pull-head.json`)
 * and that generation's files (`pull-files.ndjson`). Only the puller's modules write it; a two-way
 * node (engine/two-way.ts) that applies through the puller tells it what the docroot holds with
 * {@link preparePullState} and records a generation it published itself with
 * {@link adoptPullState}, instead of writing the puller's files by hand (issue 26).
 */
import type { Entry, FileMap, Head } from "../core/manifest.ts";
import { filesDigest } from "../core/signing.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { readJson, readNdjsonMap, writeJson, writeNdjsonMap } from "../adapters/state-files.ts";

/** The small state file read on every run (the no-op path reads only this). */
export interface PullState {
  readonly generation: number;
  readonly etag: string;
  /** The source (s3:// URL) the generation came from: journals apply only on top of the same source. */
  readonly source: string;
  readonly headTime: string;
  /** False when the docroot may not equal `generation` (then journals are not applied on top). */
  readonly complete: boolean;
  /** filesDigest of the generation applied (core/signing.ts): the same number with other content is refused. */
  readonly filesSha256?: string | undefined;
  /** Of the signature verified when it was applied: the site (pinned) and when it was signed (--max-age). */
  readonly site?: string | undefined;
  readonly signedTime?: string | undefined;
  /** The manifest of the generation applied: the same number with another manifest is looked at again. */
  readonly manifestSha256?: string | undefined;
  /**
   * Set by {@link adoptPullState}: the generation is the two-way node's own, never another writer's
   * for `--on-apply` when a round heals into it (engine/two-way.ts). The puller's next apply drops it.
   */
  readonly publishedHere?: boolean | undefined;
}

/** The puller's state, or undefined before its first run. */
export async function readPullState(state: StateDir): Promise<PullState | undefined> {
  return readJson<PullState>(state.pullHead);
}

/** The files of the generation the puller's state names (empty before its first run). */
export function readPulledFiles(state: StateDir): Promise<Map<string, Entry>> {
  return readNdjsonMap<Entry>(state.pullFiles);
}

/** Save the state after a run: the files first, so a state naming a generation always has its files. */
export async function writePullState(state: StateDir, files: FileMap, s: PullState): Promise<void> {
  await writeNdjsonMap(state.pullFiles, files);
  await writeJson(state.pullHead, s);
}

/** Update the state of the generation already held (a new ETag or signature for the same files). */
export function refreshPullState(state: StateDir, s: PullState): Promise<void> {
  return writeJson(state.pullHead, s);
}

/**
 * Tell the puller that the docroot holds `held` on top of generation `generation` of `source`, not
 * a whole generation: the next run reads the head's manifest and plans against `held` (never
 * journals on top of it, and no conditional GET that could answer "not modified").
 */
export function preparePullState(state: StateDir, held: FileMap, generation: number, source: string): Promise<void> {
  return writePullState(state, held, { generation, etag: "", source, headTime: "", complete: false });
}

/**
 * Record that the docroot holds `files`, the whole generation `head` (read with ETag `etag`) of
 * `source`, without a pull: a writer that published it from this docroot (nothing to download).
 */
export function adoptPullState(state: StateDir, source: string, head: Head, etag: string, files: FileMap): Promise<void> {
  return writePullState(state, files, { generation: head.generation, etag, source, headTime: head.time, complete: true, filesSha256: filesDigest(files.values()), manifestSha256: head.manifestSha256, publishedHere: true });
}
