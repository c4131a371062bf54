/**
 * The simulation's invariants (issue 26), checked against the world itself (the MemoryStore's
 * buckets and the docroots on disk), never through an actor's own account of what it did:
 *
 * - after every step: no docroot holds bytes that no writer wrote for that path (a node with a trusted
 *   key: bytes the key's owner did not write, in signed runs), temp files aside; in unsigned runs,
 *   every head names objects that exist (by version or ETag) and hold its bytes, paths it marks dirty aside;
 * - after every successful pull: the docroot is exactly the manifest of the generation it says it applied;
 * - at the end (faults stopped, every actor ran clean): every docroot equals its source's head, a
 *   region equals the primary, journals replay to the manifest, every version a two-way writer wrote
 *   is published or kept.
 *
 * It also holds the adversary's moves (bucket write access, no key), since they read what it saw.
 */
import { readFileSync, statSync, utimesSync, writeFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { currentOf, type MemoryStore, type MemoryWorld } from "../src/adapters/memory-store.ts";
import { type ObjectStore, realVersion, unquoteEtag } from "../src/adapters/object-store.ts";
import { jobStateDir } from "../src/adapters/state-dir.ts";
import { type Location, metaPrefix, parseLocation } from "../src/core/location.ts";
import { type FileMap, metaKeys, parseJournal, parseManifest, serializeManifest, sha256Hex } from "../src/core/manifest.ts";
import { TEMP_MARK } from "../src/core/paths.ts";
import { type HeadState, readHead } from "../src/engine/generation-reader.ts";
import type { DocrootWriter } from "./docroots.ts";
import { listFiles } from "./docroots.ts";
import { makeUploader, pullOnceWith } from "./world.ts";

/** A broken invariant: where, which, what. */
export interface Violation {
  readonly step: number;
  readonly check: string;
  readonly message: string;
}

// The checker reads the world directly, as an auditor; it is not a node and needs no tight cap.
const CHECKER_MAX_BYTES = 64 * 1024 * 1024;

const URLS = ["s3://primary/site/", "s3://primary/shared/", "s3://region/site/", "s3://region2/site/"] as const;

interface Snapshot {
  readonly hs: HeadState;
  readonly files: FileMap | undefined;
}

/** Everything the checks remember across steps. */
export class Checker {
  /** Docroots of nodes that only pull: which location's writes they may hold, and whether they trust a key. */
  readonly pullers: { id: string; docroot: string; written: string; trusted: boolean }[] = [];
  /** Two-way writers' docroots. */
  readonly syncNodes: { id: string; docroot: string }[] = [];
  /** Where two-way writers keep losing versions. */
  readonly conflictDirs = new Set<string>();
  /** The generation whose retained manifest the adversary last edited, per location. */
  readonly edited = new Map<string, number>();
  /** Pullers whose clean run refused the head (the right answer to a forgery in a signed run). */
  readonly refused = new Set<string>();
  /** Keys (bucket/key) the adversary wrote garbage over. */
  private readonly garbage = new Set<string>();
  private readonly written = new Map<string, Map<string, Set<string>>>();
  private readonly published = new Map<string, Set<string>>();
  private readonly manifests = new Map<string, FileMap>();
  private readonly heads = new Map<string, Snapshot>();
  private readonly headBodies = new Map<string, Buffer[]>();
  private readonly hashes = new Map<string, { key: string; sha: string }>();
  private readonly headSeen = new Map<string, unknown>();
  private readonly bodySha = new WeakMap<Buffer, string>();
  private readonly world: MemoryWorld;
  private readonly raw: (bucket: string) => MemoryStore;
  private readonly signed: boolean;

  constructor(o: { world: MemoryWorld; raw: (bucket: string) => MemoryStore; root: string; signed: boolean }) {
    this.world = o.world;
    this.raw = o.raw;
    this.signed = o.signed;
  }

  /** A writer put `sha` at `rel` in a docroot that publishes to `url`. */
  wrote(url: string, rel: string, sha: string): void {
    let m = this.written.get(url);
    if (!m) this.written.set(url, (m = new Map()));
    let s = m.get(rel);
    if (!s) m.set(rel, (s = new Set()));
    s.add(sha);
  }

  /** The generation of `url`'s head at the last step (0: none). */
  headGeneration(url: string): number {
    return this.heads.get(url)?.hs.head.generation ?? 0;
  }

  /**
   * After every step: snapshots of every head, then the per-step invariants. Only the docroot of
   * the actor that moved (`actor`; undefined: all) can have changed since the last step.
   */
  async afterStep(step: number, actor?: string): Promise<Violation | undefined> {
    for (const url of URLS) await this.snapshot(url);
    for (const p of this.pullers) {
      if (actor !== undefined && actor !== p.id) continue;
      const v = this.foreignBytes(step, p.id, p.docroot, p.written, p.trusted);
      if (v) return v;
    }
    if (!this.signed) {
      for (const n of this.syncNodes) {
        if (actor !== undefined && actor !== n.id) continue;
        const v = this.foreignBytes(step, n.id, n.docroot, "s3://primary/shared/", false);
        if (v) return v;
      }
      for (const url of URLS) {
        const v = this.headObjects(step, url);
        if (v) return v;
      }
    }
    return undefined;
  }

  private async snapshot(url: string): Promise<void> {
    const loc = parseLocation(url);
    // Unchanged head object: nothing to read (most steps write no head).
    const b = this.world.buckets.get(loc.bucket);
    const cur = b && currentOf(b, metaKeys.head(metaPrefix(loc)));
    const seen = this.headSeen.get(url);
    if (cur === seen) return;
    this.headSeen.set(url, cur);
    const store = this.raw(loc.bucket);
    let hs: HeadState | undefined;
    try {
      hs = await readHead(store, loc);
    } catch {
      hs = undefined; // a head that does not parse (the adversary's): readers refuse it
    }
    if (!hs) {
      this.heads.delete(url);
      return;
    }
    const prev = this.heads.get(url);
    if (prev && prev.hs.etag === hs.etag) return;
    const got = await store.get(metaKeys.head(metaPrefix(loc)), { maxBytes: CHECKER_MAX_BYTES });
    if (got.status === "ok") {
      const list = this.headBodies.get(url) ?? [];
      list.push(got.body);
      this.headBodies.set(url, list.slice(-8));
    }
    const files = await this.manifest(loc, hs.head.generation, hs.head.manifestSha256);
    this.heads.set(url, { hs, files });
    if (files) {
      let set = this.published.get(url);
      if (!set) this.published.set(url, (set = new Set()));
      for (const e of files.values()) set.add(`${e.path}\0${e.sha256}`);
    }
  }

  /** The manifest with this sha256 (of generation `gen` at `loc`), if it can be had. */
  private async manifest(loc: Location, gen: number, sha: string): Promise<FileMap | undefined> {
    const hit = this.manifests.get(sha);
    if (hit) return hit;
    const got = await this.raw(loc.bucket).get(metaKeys.manifest(metaPrefix(loc), gen), { maxBytes: CHECKER_MAX_BYTES });
    if (got.status !== "ok" || sha256Hex(got.body) !== sha) return undefined;
    try {
      const files = await parseManifest(got.body, sha, gen);
      this.manifests.set(sha, files);
      return files;
    } catch {
      return undefined;
    }
  }

  /** sha256 of each file in `docroot` (temp files aside), cached by size, mtime and inode. */
  private docroot(docroot: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const rel of listFiles(docroot)) {
      if (path.basename(rel).includes(TEMP_MARK)) continue;
      const abs = path.join(docroot, rel);
      let st;
      try {
        st = statSync(abs);
      } catch {
        continue;
      }
      const key = `${st.size}:${st.mtimeMs}:${st.ino}:${st.ctimeMs}`;
      const c = this.hashes.get(abs);
      if (c && c.key === key) {
        out.set(rel, c.sha);
        continue;
      }
      const sha = sha256Hex(readFileSync(abs));
      this.hashes.set(abs, { key, sha });
      out.set(rel, sha);
    }
    return out;
  }

  private foreignBytes(step: number, id: string, docroot: string, url: string, trusted: boolean): Violation | undefined {
    const w = this.written.get(url) ?? new Map<string, Set<string>>();
    for (const [rel, sha] of this.docroot(docroot)) {
      if (w.get(rel)?.has(sha)) continue;
      return trusted
        ? { step, check: "trusted-node-holds-unsigned-bytes", message: `${id} (trusted key) holds ${rel} with bytes ${sha.slice(0, 12)}… that no writer holding the key wrote` }
        : { step, check: "foreign-bytes", message: `${id} holds ${rel} with bytes ${sha.slice(0, 12)}… that no writer wrote for that path (partial or mixed)` };
    }
    return undefined;
  }

  /** The head of `url` names objects that are there, holding its bytes (dirty paths aside). */
  private headObjects(step: number, url: string): Violation | undefined {
    const snap = this.heads.get(url);
    if (!snap?.files) return undefined;
    const dirty = new Set(snap.hs.head.dirty ?? []);
    if (dirty.has("*")) return undefined;
    const loc = parseLocation(url);
    const b = this.world.buckets.get(loc.bucket);
    if (!b) return undefined;
    for (const e of snap.files.values()) {
      if (dirty.has(e.path)) continue;
      const key = loc.prefix + e.path;
      const vid = realVersion(e.versionId);
      const v = vid ? b.keys.get(key)?.find((x) => x.versionId === vid && !x.deleteMarker) : currentOf(b, key);
      const what = `${url} generation ${snap.hs.head.generation} names ${e.path}`;
      if (!v || (!vid && unquoteEtag(v.etag) !== unquoteEtag(e.etag))) {
        return { step, check: "head-names-missing-object", message: `${what} (${vid ? `version ${vid}` : `ETag ${e.etag}`}) but the bucket holds ${v ? `ETag ${v.etag}` : "nothing"} there, and the head does not mark it dirty` };
      }
      let sha = this.bodySha.get(v.body);
      if (sha === undefined) this.bodySha.set(v.body, (sha = sha256Hex(v.body)));
      if (sha !== e.sha256) return { step, check: "head-names-wrong-bytes", message: `${what} with sha256 ${e.sha256.slice(0, 12)}…, the object it names holds ${sha.slice(0, 12)}…` };
    }
    return undefined;
  }

  /** After a pull said it applied a generation: the docroot is exactly that generation's manifest. */
  async afterPull(id: string, docroot: string, base: string, bucket: string): Promise<Violation | undefined> {
    const st = jobStateDir(base, "pull", { docroot });
    let ph: { generation: number; manifestSha256?: string; complete?: boolean; source: string };
    try {
      ph = JSON.parse(readFileSync(st.pullHead, "utf8")) as typeof ph;
    } catch {
      return undefined;
    }
    if (!ph.complete || !ph.manifestSha256) return undefined;
    return this.docrootIs(id, docroot, { bucket, prefix: parseLocation(ph.source).prefix }, ph.generation, ph.manifestSha256);
  }

  /** After the planted naive puller (sim/plants.ts) said what it applied. */
  async afterNaivePull(id: string, docroot: string, state: string, bucket: string): Promise<Violation | undefined> {
    const ph = JSON.parse(readFileSync(path.join(state, "naive.json"), "utf8")) as { generation: number; manifestSha256: string };
    const prefix = id === "pull-shared" ? "shared/" : "site/";
    return this.docrootIs(id, docroot, { bucket, prefix }, ph.generation, ph.manifestSha256);
  }

  private async docrootIs(id: string, docroot: string, loc: Location, gen: number, sha: string): Promise<Violation | undefined> {
    const files = await this.manifest(loc, gen, sha);
    if (!files) return undefined;
    const have = this.docroot(docroot);
    for (const e of files.values()) {
      const got = have.get(e.path);
      if (got !== e.sha256) return { step: -1, check: "accepted-head-mismatch", message: `${id} applied generation ${gen}, whose ${e.path} is ${e.sha256.slice(0, 12)}…, but holds ${got ? `${got.slice(0, 12)}…` : "nothing"} there` };
    }
    for (const p of have.keys()) if (!files.has(p)) return { step: -1, check: "accepted-head-mismatch", message: `${id} applied generation ${gen}, which has no ${p}, but holds it` };
    return undefined;
  }

  /** The adversary's move: bucket write access, no key. */
  async attack(kind: "deface" | "replay" | "garbage" | "manifest", url: string, store: ObjectStore, dir: string, r: number, now: () => Date): Promise<string> {
    const loc = parseLocation(url);
    if (kind === "manifest") {
      // Issue 22's second laundering: a version of a page holding the attacker's bytes (the current
      // bytes put back on top, so the live object looks right), and the retained manifest of the
      // generation before the head edited to name that version. A rollback to it must refuse.
      const target = this.headGeneration(url) - 1;
      if (target < 1) return "no retained generation";
      const key = metaKeys.manifest(metaPrefix(loc), target);
      const got = await store.get(key, { maxBytes: CHECKER_MAX_BYTES });
      if (got.status !== "ok") return "retained manifest gone";
      const files = await parseManifest(got.body, sha256Hex(got.body), target);
      const e = files.get("index.html") ?? [...files.values()][0];
      if (!e) return "empty generation";
      const cur = await store.get(loc.prefix + e.path, { maxBytes: CHECKER_MAX_BYTES });
      const evil = Buffer.from(`<script>retained ${r}</script>\n`);
      const put = await store.put(loc.prefix + e.path, evil, { contentType: "text/html" });
      if (cur.status === "ok") await store.put(loc.prefix + e.path, cur.body, { contentType: "text/html" });
      files.set(e.path, { ...e, size: evil.length, sha256: sha256Hex(evil), etag: put.etag, versionId: put.versionId });
      await store.put(key, await serializeManifest(target, files), { contentType: "application/gzip" });
      this.edited.set(url, target);
      return "edited a retained manifest";
    }
    if (kind === "replay") {
      const bodies = this.headBodies.get(url) ?? [];
      if (bodies.length < 2) return "nothing to replay";
      const old = bodies[r % (bodies.length - 1)] as Buffer;
      await store.put(metaKeys.head(metaPrefix(loc)), old, { contentType: "application/json" });
      return "replayed an old head";
    }
    if (kind === "garbage") {
      const files = this.heads.get(url)?.files;
      const paths = files ? [...files.keys()] : [];
      if (paths.length === 0) return "nothing to overwrite";
      const key = loc.prefix + (paths[r % paths.length] as string);
      this.garbage.add(`${loc.bucket}/${key}`);
      await store.put(key, Buffer.from(`garbage ${r}\n`), { contentType: "text/html" });
      return "overwrote an object";
    }
    // Deface: take the site as it is (no key needed to read), change a page, publish it unsigned.
    const doc = path.join(dir, "doc");
    await pullOnceWith({ loc, store }, { docroot: doc, base: path.join(dir, "state") }, { now });
    const target = path.join(doc, "index.html");
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, `<script>defaced ${r}</script>\n`);
    const t = now().getTime() / 1000 + 1;
    utimesSync(target, t, t);
    const up = makeUploader(store, { docroot: doc, url, base: path.join(dir, "ustate") }, { now });
    try {
      await up.reconcile();
    } finally {
      await up.releaseLease();
    }
    return "published a defaced, unsigned generation";
  }

  /**
   * Whether the head of `url` names an object the adversary wrote garbage over that holds other
   * bytes still: lost for good when no writer held those bytes to upload them again (--verify),
   * so a reader refusing it (and saying which) is the right answer. Judged on the bucket itself.
   */
  lostToGarbage(url: string): boolean {
    const snap = this.heads.get(url);
    const loc = parseLocation(url);
    const b = this.world.buckets.get(loc.bucket);
    if (!snap?.files || !b) return false;
    for (const e of snap.files.values()) {
      const key = loc.prefix + e.path;
      if (!this.garbage.has(`${loc.bucket}/${key}`) || realVersion(e.versionId)) continue;
      const v = currentOf(b, key);
      if (!v || sha256Hex(v.body) !== e.sha256) return true;
    }
    return false;
  }

  /** The end state, once every actor ran clean. */
  async atEnd(step: number, o: { regions: readonly string[]; syncIds: readonly string[]; docs: DocrootWriter }): Promise<Violation | undefined> {
    for (const url of URLS) await this.snapshot(url);
    const filesOf = (url: string) => this.heads.get(url)?.files;
    const same = (id: string, docroot: string, url: string): Violation | undefined => {
      const files = filesOf(url);
      if (!files) return undefined;
      const have = this.docroot(docroot);
      const diff = [...files.values()].filter((e) => have.get(e.path) !== e.sha256).map((e) => e.path).concat([...have.keys()].filter((p) => !files.has(p)));
      return diff.length === 0 ? undefined : { step, check: "not-converged", message: `${id} differs from the head of ${url} (generation ${this.headGeneration(url)}) at ${diff.slice(0, 5).join(", ")}` };
    };
    for (const p of this.pullers) {
      if (this.refused.has(p.id)) continue;
      const src = p.id === "pull-region" ? "s3://region/site/" : p.id === "pull-region2" ? "s3://region2/site/" : p.written;
      const v = same(p.id, p.docroot, src);
      if (v) return v;
    }
    for (const n of this.syncNodes) {
      if (this.refused.has(n.id)) continue;
      const v = same(n.id, n.docroot, "s3://primary/shared/");
      if (v) return v;
    }
    for (const region of o.regions) {
      const a = filesOf("s3://primary/site/");
      const b = filesOf(region);
      if (a && b) {
        const diff = [...a.values()].filter((e) => b.get(e.path)?.sha256 !== e.sha256).map((e) => e.path).concat([...b.keys()].filter((p) => !a.has(p)));
        if (diff.length > 0) return { step, check: "region-differs", message: `${region}'s head differs from the primary's at ${diff.slice(0, 5).join(", ")}` };
      }
    }
    for (const url of URLS) {
      const v = await this.journalsReplay(step, url);
      if (v) return v;
    }
    const kept = new Set<string>();
    for (const d of this.conflictDirs) for (const sha of this.docroot(d).values()) kept.add(sha);
    const published = this.published.get("s3://primary/shared/") ?? new Set<string>();
    for (const id of o.syncIds) {
      // A node that refuses the head (a forgery it cannot verify) publishes nothing, but what it
      // wrote is still in its own docroot: not lost.
      const own = this.refused.has(id) ? new Set(this.docroot(this.syncNodes.find((n) => n.id === id)?.docroot ?? "").values()) : new Set<string>();
      for (const [rel, sha] of o.docs.lastOf(id)) {
        if (sha === null || published.has(`${rel}\0${sha}`) || kept.has(sha) || own.has(sha)) continue;
        return { step, check: "version-lost", message: `${id} wrote ${rel} (${sha.slice(0, 12)}…): it was never published and is not kept` };
      }
    }
    return undefined;
  }

  /** The oldest retained manifest plus the journals after it equals the head's manifest. */
  private async journalsReplay(step: number, url: string): Promise<Violation | undefined> {
    const snap = this.heads.get(url);
    if (!snap?.files) return undefined;
    const loc = parseLocation(url);
    const store = this.raw(loc.bucket);
    const { generation, oldestJournal } = snap.hs.head;
    let files: FileMap;
    if (oldestJournal <= 0) files = new Map();
    else {
      const got = await store.get(metaKeys.manifest(metaPrefix(loc), oldestJournal), { maxBytes: CHECKER_MAX_BYTES });
      if (got.status !== "ok") return undefined;
      files = await parseManifest(got.body, sha256Hex(got.body), oldestJournal);
    }
    for (let g = oldestJournal + 1; g <= generation; g++) {
      const got = await store.get(metaKeys.journal(metaPrefix(loc), g), { maxBytes: CHECKER_MAX_BYTES });
      if (got.status !== "ok") return { step, check: "journal-replay", message: `${url}: the head keeps journals after ${oldestJournal}, but journal ${g} is not there` };
      const j = parseJournal(got.body, g);
      for (const p of j.deletes) files.delete(p);
      for (const e of j.puts) files.set(e.path, e);
    }
    for (const e of snap.files.values()) {
      if (files.get(e.path)?.sha256 !== e.sha256) return { step, check: "journal-replay", message: `${url}: journals ${oldestJournal + 1}..${generation} replayed give ${e.path} ${files.get(e.path)?.sha256.slice(0, 12) ?? "nothing"}, the manifest says ${e.sha256.slice(0, 12)}…` };
    }
    for (const p of files.keys()) if (!snap.files.has(p)) return { step, check: "journal-replay", message: `${url}: journals replayed keep ${p}, which the manifest of generation ${generation} does not have` };
    return undefined;
  }
}
