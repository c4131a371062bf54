/**
 * Shared pieces of the fault and attack suite (test/integ/faults-*.integ.test.ts): a seeded random
 * source, the figures each file reports, and the invariant checks run after every fault:
 * the bucket's head names a complete generation, a docroot holds only whole files of some generation,
 * and a bucket or docroot equals the source tree exactly.
 */
import { createHash } from "node:crypto";
import { appendFileSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { after } from "node:test";
import type { Ctx } from "./ctx.ts";
import { type Fault, startProxy } from "./proxy.ts";
import { getBytes, listKeys } from "./s3.ts";
import { snapshot } from "./tree.ts";
import { serverLabel } from "./s3-server.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** True in `npm run soak`: the same tests with larger counts. */
export const SOAK = process.env.FANSYNC_SOAK === "1";

/** A count that grows in the soak run. */
export function count(normal: number, soak: number): number {
  const override = Number(process.env.FANSYNC_FAULT_SCALE ?? "");
  const n = SOAK ? soak : normal;
  return Number.isFinite(override) && override > 0 ? Math.max(1, Math.round(n * override)) : n;
}

/** A small seeded PRNG (mulberry32): a failing run is replayed by its printed seed. */
export function rng(seed: number): { next(): number; int(lo: number, hi: number): number; pick<T>(xs: readonly T[]): T } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), pick: (xs) => xs[Math.floor(next() * xs.length)] as never };
}

/** The seed of this run: FANSYNC_SEED, else derived from the clock (printed with the figures). */
export const SEED = Number(process.env.FANSYNC_SEED ?? "") || (Date.now() % 1_000_000);

/** What a test file tried, summed into the suite's figures line. */
export interface Figures {
  faults: number;
  killPoints: number;
  hostile: number;
  filesVerified: number;
  bytesLost: number;
  /** Add what one check verified (files, and bytes lost if it compares content). */
  verified(r: { readonly files: number; readonly bytesLost?: number }): void;
}

/**
 * Per-file figures: appended as one JSON line to FANSYNC_FIGURES (run.sh sets it per run and prints
 * the totals) and printed by the file itself, so a file run alone still shows what it did.
 */
export function useFigures(file: string): Figures {
  const f: Figures = {
    faults: 0, killPoints: 0, hostile: 0, filesVerified: 0, bytesLost: 0,
    verified(r) {
      f.filesVerified += r.files;
      f.bytesLost += r.bytesLost ?? 0;
    },
  };
  after(() => {
    const server = serverLabel();
    const { faults, killPoints, hostile, filesVerified, bytesLost } = f;
    const line = JSON.stringify({ file, server, seed: SEED, faults, killPoints, hostile, filesVerified, bytesLost });
    const out = process.env.FANSYNC_FIGURES ?? path.join(os.tmpdir(), `fansync-figures-${process.ppid}.ndjson`);
    appendFileSync(out, line + "\n");
    process.stdout.write(`# figures ${file} (${server}, seed ${SEED}): faults injected ${f.faults}, kill points ${f.killPoints}, hostile inputs ${f.hostile}, files verified ${f.filesVerified}, bytes lost ${f.bytesLost}\n`);
  });
  return f;
}

/** A manifest entry as stored. */
export interface StoredEntry {
  path: string;
  size: number;
  mtimeMs: number;
  mode: number;
  sha256: string;
  etag: string;
  versionId?: string;
}

/** The head and manifest of a location, or undefined before the first publish. */
export async function readGeneration(client: S3Client, bucket: string, prefix: string): Promise<{ generation: number; entries: StoredEntry[] } | undefined> {
  let head: Record<string, unknown>;
  try {
    head = JSON.parse((await getBytes(client, bucket, `${prefix}.fansync/head.json`)).toString("utf8")) as Record<string, unknown>;
  } catch (err) {
    if ((err as { name?: string }).name === "NoSuchKey") return undefined;
    throw err;
  }
  const bytes = await getBytes(client, bucket, head.manifestKey as string);
  if (sha(bytes) !== head.manifestSha256) throw new Error(`head ${String(head.generation)}: manifest sha256 differs from the head's`);
  const lines = gunzipSync(bytes).toString("utf8").split("\n").filter(Boolean);
  return { generation: head.generation as number, entries: lines.slice(1).map((l) => JSON.parse(l) as StoredEntry) };
}

/**
 * The head names a complete generation: every entry's object exists and its bytes have the entry's
 * sha256. With versioning the entry's VersionId is read, which later pushes never overwrite. Without
 * versioning a content object is path-keyed, so a push in flight (or killed) has overwritten some of
 * them: those are `moved` (their ETag differs from the manifest's, so a reader's If-Match refuses
 * them), and a moved object must never carry the manifest's ETag with other bytes. `strict` (after a
 * completed push) allows no moved object at all.
 */
export async function checkHeadComplete(client: S3Client, bucket: string, prefix: string, opts: { strict: boolean }): Promise<{ files: number; moved: number; generation: number }> {
  const g = await readGeneration(client, bucket, prefix);
  if (!g) return { files: 0, moved: 0, generation: 0 };
  let moved = 0;
  for (const e of g.entries) {
    let res;
    try {
      res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: prefix + e.path, ...(e.versionId ? { VersionId: e.versionId } : {}) }));
    } catch (err) {
      throw new Error(`generation ${g.generation}: object of ${JSON.stringify(e.path)} is missing (${(err as Error).name})`);
    }
    const body = Buffer.from(await (res.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
    if (sha(body) === e.sha256) continue;
    if (!e.versionId && res.ETag !== e.etag) {
      moved++;
      continue;
    }
    throw new Error(`generation ${g.generation}: object of ${JSON.stringify(e.path)} has sha256 ${sha(body).slice(0, 12)}, manifest says ${e.sha256.slice(0, 12)} (ETag ${res.ETag}, manifest ${e.etag})`);
  }
  if (opts.strict && moved > 0) throw new Error(`generation ${g.generation}: ${moved} object(s) no longer hold the manifest's bytes after a completed push`);
  return { files: g.entries.length, moved, generation: g.generation };
}

/**
 * The bucket equals the tree: the head's manifest lists exactly the tree's files with their sha256,
 * every object holds those bytes, and no content key outside the manifest is left behind.
 * Returns the files checked and the bytes that did not arrive (must be 0).
 */
export async function checkBucketEqualsTree(client: S3Client, bucket: string, prefix: string, root: string): Promise<{ files: number; bytesLost: number; problems: string[] }> {
  const snap = await snapshot(root);
  const g = await readGeneration(client, bucket, prefix);
  const problems: string[] = [];
  let bytesLost = 0;
  const byPath = new Map((g?.entries ?? []).map((e) => [e.path, e]));
  for (const [p, s] of snap) {
    const e = byPath.get(p);
    if (!e || e.sha256 !== s.sha256 || e.size !== s.size) {
      problems.push(`${p}: manifest ${e ? e.sha256.slice(0, 12) : "has no entry"}, tree ${s.sha256.slice(0, 12)}`);
      bytesLost += s.size;
      continue;
    }
    const body = await getBytes(client, bucket, prefix + p);
    if (sha(body) !== s.sha256) {
      problems.push(`${p}: object bytes differ from the tree`);
      bytesLost += s.size;
    }
  }
  for (const p of byPath.keys()) if (!snap.has(p)) problems.push(`${p}: in the manifest, not in the tree`);
  const keys = (await listKeys(client, bucket, prefix)).map((k) => k.slice(prefix.length)).filter((k) => !k.startsWith(".fansync/"));
  for (const k of keys) if (!snap.has(k)) problems.push(`${k}: object left behind, in no manifest`);
  return { files: snap.size, bytesLost, problems };
}

/** A docroot equals the tree (ignoring `skip`): returns problems and the bytes that did not arrive. */
export async function checkDocrootEqualsTree(node: string, master: string, skip: (rel: string) => boolean = () => false): Promise<{ files: number; bytesLost: number; problems: string[] }> {
  const want = await snapshot(master);
  const got = await snapshot(node, skip);
  const problems: string[] = [];
  let bytesLost = 0;
  for (const [p, s] of want) {
    const g = got.get(p);
    if (!g || g.sha256 !== s.sha256) {
      problems.push(`${p}: ${g ? "different bytes" : "missing"} on the node`);
      bytesLost += s.size;
    } else if (g.mode !== s.mode || g.mtimeMs !== s.mtimeMs) problems.push(`${p}: mode/mtime differ`);
  }
  for (const p of got.keys()) if (!want.has(p)) problems.push(`${p}: on the node, not on the master`);
  return { files: want.size, bytesLost, problems };
}

/** Every sha256 each path had in some generation: what a node may show under that name. */
export class Generations {
  private readonly allowed = new Map<string, Set<string>>();
  /** Record the tree of a generation (path → sha256). */
  async add(root: string): Promise<void> {
    for (const [p, s] of await snapshot(root)) {
      let set = this.allowed.get(p);
      if (!set) this.allowed.set(p, (set = new Set()));
      set.add(s.sha256);
    }
  }
  /** Why the file content `sha256` under `p` is not from any generation, or undefined. */
  check(p: string, sha256: string): string | undefined {
    const set = this.allowed.get(p);
    if (!set) return `${p}: a name no generation had`;
    return set.has(sha256) ? undefined : `${p}: partial or mixed content (sha256 ${sha256.slice(0, 12)} is no generation's)`;
  }
}

/**
 * Sample a docroot while a process writes it: every file under a final name (not a temp file, not
 * skipped) must be some generation's whole file. Returns a stop function with the findings.
 */
export function sampleDocroot(root: string, gens: Generations, skip: (rel: string) => boolean): () => Promise<{ samples: number; violations: string[] }> {
  let stopped = false;
  let samples = 0;
  const violations: string[] = [];
  const loop = (async () => {
    while (!stopped) {
      let names: string[];
      try {
        names = (await readdir(root, { recursive: true, withFileTypes: true })).filter((d) => d.isFile()).map((d) => path.relative(root, path.join(d.parentPath, d.name)).split(path.sep).join("/"));
      } catch {
        names = [];
      }
      for (const rel of names) {
        if (skip(rel) || rel.split("/").some((s) => s.startsWith(".fansync-tmp-"))) continue;
        let buf: Buffer;
        try {
          buf = await readFile(path.join(root, rel));
        } catch {
          continue; // renamed or deleted between readdir and read
        }
        const why = gens.check(rel, sha(buf));
        if (why) violations.push(why);
      }
      samples++;
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    return { samples, violations };
  };
}

/** Wait for `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A random fault for a request with probability `p`: latency, 503 SlowDown, 500, a reset mid-body, or (GET only) a truncated body. */
export function randomFaults(r: ReturnType<typeof rng>, p: number): (q: { method: string; url: string }) => Fault {
  return (q) => {
    if (r.next() >= p) return { kind: "none" };
    const menu: Fault[] = [
      { kind: "delay", ms: r.int(20, 300) },
      { kind: "status", status: 503, code: "SlowDown" },
      { kind: "status", status: 500, code: "InternalError" },
      { kind: "reset-mid-body" },
    ];
    // A truncated body only means something for a GET; a PUT's answer has none.
    if (q.method === "GET") menu.push({ kind: "truncate" });
    return r.pick(menu);
  };
}

/**
 * A versioned bucket reached through a fault proxy, with a master and a node tree and their state
 * directories; `via(stateDir)` gives the flags that send a run through the proxy.
 */
export async function proxiedSite(ctx: Ctx, tag: string) {
  const bucket = await ctx.server.bucket(tag, { versioning: true });
  const proxy = await startProxy(ctx.server.endpoint);
  const dirs = { master: ctx.tmp("master"), node: ctx.tmp("node"), mstate: ctx.tmp("mstate"), nstate: ctx.tmp("nstate") };
  const url = `s3://${bucket}/site`;
  const via = (stateDir: string) => ["--endpoint-url", proxy.url, "--state-dir", stateDir, "--log-format", "json", "--concurrency", "4"];
  return { bucket, proxy, url, via, ...dirs };
}
