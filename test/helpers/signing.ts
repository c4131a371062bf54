/**
 * Signed generations in integration tests: a key pair made by `fansync keygen`, a retained
 * manifest read back as a file map, and a hostile bucket writer's tools (plant a generation, signed
 * by some key or not). Shared by signing.integ.test.ts and trust.integ.test.ts.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { type Entry, type FileMap, type Head, metaKeys, serializeHead, serializeManifest, sha256Hex } from "../../src/core/manifest.ts";
import { parsePrivateKey, signGeneration, type SigningKey } from "../../src/core/signing.ts";
import { type Ctx, expectCode } from "./ctx.ts";
import { getBytes, putBytes } from "./s3.ts";

/** `fansync keygen` into a fresh directory: the private key file, the .pub file and the printed line. */
export async function keygen(ctx: Ctx, tag: string): Promise<{ key: string; pub: string; line: string; signing: SigningKey }> {
  const key = path.join(ctx.tmp(tag), "signing.key");
  const r = await ctx.cli(["keygen", key]);
  expectCode(r, 0);
  const signing = parsePrivateKey(readFileSync(key, "utf8"));
  assert.ok(signing);
  return { key, pub: `${key}.pub`, line: r.stdout.trim(), signing };
}

/** The manifest entries of generation `gen` under the meta prefix `meta` of `bucket`, as a file map. */
export async function manifestOf(ctx: Ctx, bucket: string, meta: string, gen: number): Promise<FileMap> {
  const lines = gunzipSync(await getBytes(ctx.server.client, bucket, metaKeys.manifest(meta, gen))).toString("utf8").split("\n").filter(Boolean);
  return new Map(lines.slice(1).map((l) => JSON.parse(l) as Entry).map((e) => [e.path, e]));
}

/**
 * Plant generation `gen` under `meta` in `bucket`, as a bucket writer without the key would: its
 * manifest (of `files`, or raw bytes) and a head naming it, signed by `key` (or not).
 */
export async function plant(ctx: Ctx, bucket: string, meta: string, gen: number, files: FileMap, opts: { key?: SigningKey; site?: string; manifest?: Buffer; signFiles?: FileMap } = {}): Promise<void> {
  const body = opts.manifest ?? (await serializeManifest(gen, files));
  await putBytes(ctx.server.client, bucket, metaKeys.manifest(meta, gen), body);
  const time = new Date().toISOString();
  const signed = opts.signFiles ?? files;
  const head: Head = {
    format: "fansync-head/1", generation: gen, manifestKey: metaKeys.manifest(meta, gen), manifestSha256: sha256Hex(body), files: signed.size, bytes: 0, oldestJournal: gen, writer: "attacker", time,
    ...(opts.key ? { signature: signGeneration(opts.key, opts.site ?? "", gen, signed.values(), time) } : {}),
  };
  await putBytes(ctx.server.client, bucket, `${meta}head.json`, serializeHead(head));
}
