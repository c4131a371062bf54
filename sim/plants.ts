/**
 * Bugs the self-test plants (`npm run sim -- --self-test`), each at the boundary of the real code so
 * that production paths stay as they are: a store wrapper, or an actor doing its job the wrong way.
 * The simulation must catch every one; a planted bug it does not catch fails the self-test.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import path from "node:path";
import type { ObjectStore, PutResult } from "../src/adapters/object-store.ts";
import type { Source } from "../src/engine/puller.ts";
import { readHead, readManifest } from "../src/engine/generation-reader.ts";
import { TEMP_MARK } from "../src/core/paths.ts";
import { listFiles } from "./docroots.ts";

/** Every method of `inner`, with some replaced. */
function wrap(inner: ObjectStore, over: Partial<ObjectStore>): ObjectStore {
  return new Proxy(inner, {
    get(target, prop, recv) {
      if (prop in over) return (over as Record<string | symbol, unknown>)[prop];
      const v = Reflect.get(target, prop, recv) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * Planted: "the head written before its objects". Content PUTs answer at once with the ETag they
 * will have, and reach the bucket only after the next head.json write.
 */
export function plantHeadBeforeObjects(inner: ObjectStore): ObjectStore {
  const later: (() => Promise<unknown>)[] = [];
  return wrap(inner, {
    async putContent(key, body, sha256, attrs, signal): Promise<PutResult> {
      later.push(() => inner.putContent(key, body, sha256, attrs, signal));
      return { etag: `"${createHash("md5").update(body).digest("hex")}"`, versionId: undefined };
    },
    async put(key, body, attrs, cond, signal): Promise<PutResult> {
      const r = await inner.put(key, body, attrs, cond, signal);
      if (key.endsWith("/.fansync/head.json")) while (later.length > 0) await (later.shift() as () => Promise<unknown>)();
      return r;
    },
  });
}

/**
 * Planted: "the replicator publishes an unverified copy". Reads and server-side copies take
 * whatever the key holds now, ignoring the version and ETag the manifest names.
 */
export function plantUnverifiedSource(inner: ObjectStore): ObjectStore {
  return wrap(inner, {
    getStream: (key, opts) => inner.getStream(key, { maxBytes: opts.maxBytes, ...(opts.signal ? { signal: opts.signal } : {}) }),
    headAttrs: (key, opts = {}) => inner.headAttrs(key, { ...(opts.signal ? { signal: opts.signal } : {}) }),
    copy: (key, from, attrs, signal) => inner.copy(key, { bucket: from.bucket, key: from.key, etag: "" }, attrs, signal),
  });
}

/**
 * Planted: "the puller skips sha256 checks". It reads the head and manifest, then installs whatever
 * each key holds now, unchecked, and records the manifest it applied (`<state>/naive.json`).
 */
export async function naivePull(source: Source, docroot: string, state: string): Promise<void> {
  const hs = await readHead(source.store, source.loc);
  if (!hs) throw new Error("no head");
  const { files } = await readManifest(source.store, hs.head);
  mkdirSync(docroot, { recursive: true });
  for (const e of files.values()) {
    const got = await source.store.get(source.loc.prefix + e.path, { maxBytes: 64 * 1024 * 1024 });
    if (got.status !== "ok") throw new Error(`${e.path}: ${got.status}`);
    const abs = path.join(docroot, e.path);
    for (const f of listFiles(docroot)) if (e.path.startsWith(`${f}/`)) rmSync(path.join(docroot, f), { force: true });
    mkdirSync(path.dirname(abs), { recursive: true });
    const tmp = path.join(path.dirname(abs), `${TEMP_MARK}naive`);
    writeFileSync(tmp, got.body);
    rmSync(abs, { recursive: true, force: true });
    renameSync(tmp, abs);
  }
  for (const f of listFiles(docroot)) if (!files.has(f)) rmSync(path.join(docroot, f), { force: true });
  mkdirSync(state, { recursive: true });
  writeFileSync(path.join(state, "naive.json"), JSON.stringify({ generation: hs.head.generation, manifestSha256: hs.head.manifestSha256 }));
}
