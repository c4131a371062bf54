/**
 * Sync planning: pure functions from listings to plans (no clock, disk or network).
 * The uploader and puller only carry plans out.
 */
import type { Entry, FileMap } from "./manifest.ts";
import { compareUtf8 } from "./paths.ts";

/** A file as the uploader sees it on disk, hashed. */
export interface LocalFile {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly mode: number;
  readonly sha256: string;
}

/**
 * The sha256 of a file not hashed yet: a small file whose path is new to the bucket is read once,
 * by its transfer, which hashes those bytes and then sends them (or copies the object that holds
 * them already). Planned as an upload: it can be neither unchanged nor a known twin.
 */
export const UNHASHED = "";

/** What a push must do to make the bucket's generation equal the docroot. */
export interface PushPlan {
  /** Files whose bytes must be uploaded. */
  readonly uploads: readonly LocalFile[];
  /** Files whose content already exists in the bucket under another key: copied server-side. */
  readonly copies: readonly { readonly file: LocalFile; readonly from: Entry }[];
  /** Same content, new mtime or mode: only the manifest entry changes. */
  readonly metaOnly: readonly { readonly file: LocalFile; readonly from: Entry }[];
  /** Paths to remove from the bucket. */
  readonly deletes: readonly string[];
  readonly unchanged: number;
  readonly uploadBytes: number;
}

/** True when a plan changes nothing. */
export function isEmptyPlan(p: { uploads?: readonly unknown[]; downloads?: readonly unknown[]; copies?: readonly unknown[]; metaOnly: readonly unknown[]; deletes: readonly unknown[] }): boolean {
  return (p.uploads?.length ?? 0) === 0 && (p.downloads?.length ?? 0) === 0 && (p.copies?.length ?? 0) === 0 && p.metaOnly.length === 0 && p.deletes.length === 0;
}

/**
 * Plan a push of `local` over the bucket's current `remote` manifest. `moved`: paths whose object
 * no longer holds the manifest's bytes (an interrupted commit overwrote it): such a path is uploaded
 * whatever its entry says, and its object is never the source of a server-side copy.
 */
export function planPush(local: readonly LocalFile[], remote: FileMap, opts: { dedupMinSize?: number; moved?: ReadonlySet<string> } = {}): PushPlan {
  const dedupMinSize = opts.dedupMinSize ?? 1;
  const moved = opts.moved ?? new Set<string>();
  // An object this plan overwrites (a path whose content changes) is no copy source unless it is
  // read by version: copies and uploads run concurrently, and a server that ignores
  // CopySourceIfMatch (moto) copied the new bytes under the old sha256 (a rename plus a new file
  // under the old name, in one batch).
  const overwritten = new Set<string>();
  for (const f of local) {
    const r = remote.get(f.path);
    if (r && !r.versionId && (r.sha256 !== f.sha256 || r.size !== f.size)) overwritten.add(f.path);
  }
  // The bucket's objects by content, built only when a file needs a source to copy from: a no-op
  // push over 1M entries never builds it.
  let bySha: Map<string, Entry> | undefined;
  const twinOf = (sha: string): Entry | undefined => {
    bySha ??= copySources(remote, dedupMinSize, (p) => moved.has(p) || overwritten.has(p));
    return bySha.get(sha);
  };
  const uploads: LocalFile[] = [];
  const copies: { file: LocalFile; from: Entry }[] = [];
  const metaOnly: { file: LocalFile; from: Entry }[] = [];
  const seen = new Set<string>();
  let unchanged = 0;
  let uploadBytes = 0;
  for (const f of local) {
    seen.add(f.path);
    const r = moved.has(f.path) || f.sha256 === UNHASHED ? undefined : remote.get(f.path);
    if (r && r.sha256 === f.sha256 && r.size === f.size) {
      if (r.mtimeMs === f.mtimeMs && r.mode === f.mode) unchanged++;
      else metaOnly.push({ file: f, from: r });
      continue;
    }
    const twin = f.sha256 === UNHASHED ? undefined : twinOf(f.sha256);
    if (twin && twin.size === f.size) copies.push({ file: f, from: twin });
    else {
      uploads.push(f);
      uploadBytes += f.size;
    }
  }
  const deletes = [...remote.keys()].filter((p) => !seen.has(p)).sort(compareUtf8);
  return { uploads, copies, metaOnly, deletes, unchanged, uploadBytes };
}

/**
 * The bucket's objects a push may copy server-side, by content (the first of each sha256, at least
 * `minSize` bytes): none that `excluded` names (objects that hold, or are about to hold, other
 * bytes than their entry says: moved, or overwritten by the same push and not read by version).
 */
export function copySources(remote: FileMap, minSize: number, excluded: (path: string) => boolean): Map<string, Entry> {
  const out = new Map<string, Entry>();
  for (const e of remote.values()) if (e.size >= minSize && !excluded(e.path) && !out.has(e.sha256)) out.set(e.sha256, e);
  return out;
}

/** What the puller holds for a path: what it wrote last time. */
export interface HeldFile {
  readonly size: number;
  readonly mtimeMs: number;
  readonly mode: number;
  readonly sha256: string;
}

/** What a pull must do to make the docroot equal the target generation. */
export interface PullPlan {
  readonly downloads: readonly Entry[];
  readonly metaOnly: readonly Entry[];
  readonly deletes: readonly string[];
  readonly unchanged: number;
  readonly downloadBytes: number;
}

/**
 * Plan a pull: `target` is the generation to reach, `held` what this node wrote before,
 * `extraneous` files on disk that fansync never wrote and that should go (--delete-extraneous).
 */
export function planPull(target: FileMap, held: ReadonlyMap<string, HeldFile>, extraneous: readonly string[] = []): PullPlan {
  const downloads: Entry[] = [];
  const metaOnly: Entry[] = [];
  let unchanged = 0;
  let downloadBytes = 0;
  for (const e of target.values()) {
    const h = held.get(e.path);
    if (h && h.sha256 === e.sha256 && h.size === e.size) {
      if (h.mtimeMs === e.mtimeMs && h.mode === e.mode) unchanged++;
      else metaOnly.push(e);
    } else {
      downloads.push(e);
      downloadBytes += e.size;
    }
  }
  const deletes = [...held.keys()].filter((p) => !target.has(p));
  for (const p of extraneous) if (!target.has(p) && !held.has(p)) deletes.push(p);
  deletes.sort(compareUtf8);
  // Smaller files first: a page's many small assets land before one huge download.
  downloads.sort((a, b) => a.size - b.size || compareUtf8(a.path, b.path));
  return { downloads, metaOnly, deletes, unchanged, downloadBytes };
}
