/**
 * An honest in-memory twin of an S3 bucket behind {@link ObjectStore} (STYLE.md 15): what engine
 * tests and the seeded simulation (sim/) run on instead of a server. It keeps S3's semantics as
 * S3Store hands them to the engines:
 *
 * - strong read-after-write: every call sees every write that completed before it;
 * - ETag = `"<md5 hex>"` for a single PUT and for a copy; `"<md5 of the parts' md5s>-N"` for a
 *   multipart upload of more than one part (lib-storage sends one PUT for a body of one part);
 * - conditional PUT (`If-None-Match: *`, `If-Match`), conditional GET/HEAD, `CopySourceIfMatch`;
 * - bounded reads as S3Store's: a body over the caller's `maxBytes` is refused (`BodyTooLarge`);
 * - versioning off / Enabled / Suspended: versions, delete markers, the `"null"` version of an
 *   unversioned or suspended bucket (never handed out as a version id, as S3Store's `realVersion`);
 * - listings in UTF-8 byte order of the current, non-deleted keys.
 *
 * Switches ({@link MemoryQuirks}) turn on what real servers do differently (S3-SERVERS.md), and a
 * {@link StoreGate} sees every call at the boundary: it may delay it, fail it before it takes effect,
 * or fail it after (a lost answer: the write happened, the caller never heard), or stop the caller
 * for good (a crash point). Buckets live in a {@link MemoryWorld}, so a copy can read another bucket
 * "on the same endpoint" as on a real server.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { ConditionFailed, RemoteError } from "../core/errors.ts";
import { BodyTooLarge } from "./bounded-io.ts";
import {
  type CopySource, type CredentialFacts, type GetResult, type ListedKey, type ListOnce, type ObjectAttrs, type ObjectStore, type PutResult,
  type StreamResult, unquoteEtag, type VersioningState,
} from "./object-store.ts";

/** Server behaviours that differ from AWS, each seen on a real server (S3-SERVERS.md). */
export interface MemoryQuirks {
  /** PUT with If-Match / If-None-Match overwrites whatever is there (fauxqs). */
  readonly ignoresConditionalWrites?: boolean;
  /** CopySourceIfMatch is not checked (moto, fauxqs). */
  readonly ignoresCopySourceIfMatch?: boolean;
  /** A key that is a "directory" of another key, or the reverse, is refused (versitygw's posix backend). */
  readonly refusesPrefixClash?: boolean;
  /** If-None-Match: * is refused (412) when the current version is a delete marker (versitygw). */
  readonly refusesCreateOverDeleteMarker?: boolean;
}

/** One call as the gate sees it. */
export interface StoreCall {
  readonly bucket: string;
  readonly op: "get" | "getStream" | "head" | "put" | "putContent" | "upload" | "copy" | "delete" | "list" | "probe";
  /** The key (the first of a delete batch; the prefix of a listing). */
  readonly key: string;
}

/**
 * Sees every call at the store's boundary. `enter` runs before the call takes effect: it may wait
 * (a delay, or a scheduler deciding who goes next) or throw (the call fails, nothing happened).
 * What it returns, if anything, runs after the call took effect and may throw too: the answer is
 * lost although the write happened.
 */
export interface StoreGate {
  enter(call: StoreCall): Promise<(() => Promise<void>) | void>;
}

/** One stored version of a key (or a delete marker). */
export interface StoredVersion {
  readonly versionId: string;
  readonly body: Buffer;
  readonly etag: string;
  readonly attrs: ObjectAttrs;
  readonly deleteMarker: boolean;
  readonly lastModified: Date;
  readonly checksumSha256?: string | undefined;
}

/** A bucket: its versioning state and every key's versions, newest last. */
export interface MemoryBucket {
  versioning: VersioningState;
  readonly keys: Map<string, StoredVersion[]>;
}

/** Buckets that share an endpoint (a copy may read from any of them), and the clock of their writes. */
export class MemoryWorld {
  readonly buckets = new Map<string, MemoryBucket>();
  /** The clock of Last-Modified and the server's Date header. */
  readonly now: () => Date;
  private nextVersion = 1;
  constructor(now: () => Date = () => new Date()) {
    this.now = now;
  }

  /** Create a bucket (versioned or not); an existing one is kept. */
  bucket(name: string, versioning: VersioningState = "off"): MemoryBucket {
    let b = this.buckets.get(name);
    if (!b) this.buckets.set(name, (b = { versioning, keys: new Map() }));
    return b;
  }

  /** A fresh version id (opaque, never "null"). */
  versionId(): string {
    return `v${(this.nextVersion++).toString(36).padStart(6, "0")}`;
  }
}

/** The current version of `key` in `b`, unless absent or a delete marker. */
export function currentOf(b: MemoryBucket, key: string): StoredVersion | undefined {
  const vs = b.keys.get(key);
  const v = vs?.[vs.length - 1];
  return v && !v.deleteMarker ? v : undefined;
}

const md5 = (b: Uint8Array): Buffer => createHash("md5").update(b).digest();

/** An {@link ObjectStore} on one bucket of a {@link MemoryWorld}. */
export class MemoryStore implements ObjectStore {
  readonly bucket: string;
  readonly endpoint = "memory";
  readonly profile = undefined;
  readonly world: MemoryWorld;
  readonly quirks: MemoryQuirks;
  private readonly gate: StoreGate | undefined;

  constructor(opts: { world: MemoryWorld; bucket: string; quirks?: MemoryQuirks; gate?: StoreGate | undefined }) {
    this.world = opts.world;
    this.bucket = opts.bucket;
    this.quirks = opts.quirks ?? {};
    this.gate = opts.gate;
    this.world.bucket(opts.bucket);
  }

  /** The same bucket seen through another gate (another process talking to the same server). */
  withGate(gate: StoreGate | undefined): MemoryStore {
    return new MemoryStore({ world: this.world, bucket: this.bucket, quirks: this.quirks, gate });
  }

  private get b(): MemoryBucket {
    return this.world.bucket(this.bucket);
  }

  /** Every call goes through here: the gate before, the effect, the gate's after-hook. */
  private async call<T>(op: StoreCall["op"], key: string, signal: AbortSignal | undefined, effect: () => T): Promise<T> {
    signal?.throwIfAborted();
    const after = this.gate ? await this.gate.enter({ bucket: this.bucket, op, key }) : undefined;
    signal?.throwIfAborted();
    const out = effect();
    if (after) await after();
    return out;
  }

  private find(key: string, opts: { versionId?: string | undefined }): StoredVersion | undefined {
    if (opts.versionId === undefined) return currentOf(this.b, key);
    const v = this.b.keys.get(key)?.find((x) => x.versionId === opts.versionId);
    return v && !v.deleteMarker ? v : undefined;
  }

  /** What S3Store hands out as a version id: none for the "null" version. */
  private vid(v: StoredVersion): string | undefined {
    return v.versionId === "null" ? undefined : v.versionId;
  }

  async get(key: string, opts: { maxBytes: number; ifNoneMatch?: string; ifMatch?: string; versionId?: string; signal?: AbortSignal }): Promise<GetResult> {
    return this.call("get", key, opts.signal, (): GetResult => {
      const v = this.find(key, opts);
      if (!v) return { status: "not-found" };
      if (opts.ifMatch && unquoteEtag(opts.ifMatch) !== unquoteEtag(v.etag)) return { status: "precondition-failed" };
      if (opts.ifNoneMatch && (opts.ifNoneMatch === "*" || unquoteEtag(opts.ifNoneMatch) === unquoteEtag(v.etag))) return { status: "not-modified" };
      // As S3Store: a body over the caller's cap is refused unread (adapters/bounded-io.ts).
      if (v.body.length > opts.maxBytes) throw new BodyTooLarge(`s3://${this.bucket}/${key}`, opts.maxBytes, v.body.length);
      return { status: "ok", body: Buffer.from(v.body), etag: v.etag, versionId: this.vid(v) };
    });
  }

  async getStream(key: string, opts: { maxBytes: number; ifMatch?: string; versionId?: string; signal?: AbortSignal }): Promise<StreamResult> {
    return this.call("getStream", key, opts.signal, (): StreamResult => {
      // As S3Store: a version wins over If-Match.
      const v = this.find(key, opts);
      if (!v) return { status: "not-found" };
      if (!opts.versionId && opts.ifMatch && unquoteEtag(opts.ifMatch) !== unquoteEtag(v.etag)) return { status: "precondition-failed" };
      if (v.body.length > opts.maxBytes) throw new BodyTooLarge(`s3://${this.bucket}/${key}`, opts.maxBytes, v.body.length);
      return { status: "ok", body: Readable.from([Buffer.from(v.body)]), etag: v.etag, size: v.body.length, attrs: v.attrs };
    });
  }

  async headAttrs(key: string, opts: { ifMatch?: string; versionId?: string; signal?: AbortSignal } = {}): Promise<(ObjectAttrs & { readonly versionId?: string | undefined }) | undefined> {
    return this.call("head", key, opts.signal, () => {
      const v = this.find(key, opts);
      if (!v) return undefined;
      if (!opts.versionId && opts.ifMatch && unquoteEtag(opts.ifMatch) !== unquoteEtag(v.etag)) return undefined;
      const versionId = this.vid(v);
      return versionId ? { ...v.attrs, versionId } : v.attrs;
    });
  }

  async put(key: string, body: Uint8Array, attrs: ObjectAttrs, cond: { ifMatch?: string; ifNoneMatch?: string } = {}, signal?: AbortSignal): Promise<PutResult> {
    return this.call("put", key, signal, () => {
      if (!this.quirks.ignoresConditionalWrites) this.checkWriteCondition(key, cond);
      return this.store(key, Buffer.from(body), `"${md5(body).toString("hex")}"`, attrs);
    });
  }

  async putContent(key: string, body: Uint8Array, _sha256: string, attrs: ObjectAttrs, signal?: AbortSignal): Promise<PutResult> {
    return this.call("putContent", key, signal, () => this.store(key, Buffer.from(body), `"${md5(body).toString("hex")}"`, attrs));
  }

  async upload(key: string, body: Readable | Buffer, attrs: ObjectAttrs, opts: { size: number; partSize: number; queueSize: number; signal?: AbortSignal }): Promise<PutResult> {
    // The body is read first (as lib-storage reads its parts), then the call takes effect at once:
    // a failed stream uploads nothing, as an aborted multipart upload leaves nothing.
    let bytes: Buffer;
    if (Buffer.isBuffer(body)) bytes = body;
    else {
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(Buffer.from(c as Uint8Array));
      bytes = Buffer.concat(chunks);
    }
    if (bytes.length !== opts.size) throw new RemoteError(`multipart upload of ${key}: the body was ${bytes.length} bytes, ${opts.size} declared`);
    return this.call("upload", key, opts.signal, () => this.store(key, bytes, multipartEtag(bytes, opts.partSize), attrs));
  }

  async copy(key: string, from: CopySource, attrs: ObjectAttrs | undefined, signal?: AbortSignal): Promise<PutResult> {
    return this.call("copy", key, signal, () => {
      const src = this.world.buckets.get(from.bucket);
      if (!src) throw new RemoteError(`COPY to ${this.bucket}/${key}: no bucket ${from.bucket}`);
      const v = from.versionId !== undefined ? src.keys.get(from.key)?.find((x) => x.versionId === from.versionId) : currentOf(src, from.key);
      if (!v || v.deleteMarker) throw new ConditionFailed(`copy source ${from.key} changed or vanished (HTTP 404)`);
      if (from.etag && !this.quirks.ignoresCopySourceIfMatch && unquoteEtag(from.etag) !== unquoteEtag(v.etag)) {
        throw new ConditionFailed(`copy source ${from.key} changed or vanished (HTTP 412)`);
      }
      // CopyObject answers the MD5 of the bytes, also for a multipart source.
      return this.store(key, Buffer.from(v.body), `"${md5(v.body).toString("hex")}"`, attrs ?? v.attrs);
    });
  }

  async deleteMany(keys: readonly string[], signal?: AbortSignal): Promise<{ key: string; error: string }[]> {
    return this.call("delete", keys[0] ?? "", signal, () => {
      for (const k of keys) this.remove(k);
      return [];
    });
  }

  async list(prefix: string, opts: { max?: number; signal?: AbortSignal | undefined } = {}): Promise<{ keys: ListedKey[]; truncated: boolean }> {
    return this.call("list", prefix, opts.signal, () => {
      const all = this.currentKeys(prefix);
      const max = opts.max ?? Number.MAX_SAFE_INTEGER;
      const keys = all.slice(0, max).map((k) => {
        const v = currentOf(this.b, k) as StoredVersion;
        return { key: k, size: v.body.length, lastModified: v.lastModified };
      });
      return { keys, truncated: all.length > max };
    });
  }

  async readVersioning(signal?: AbortSignal): Promise<VersioningState> {
    return this.call("probe", "", signal, () => this.b.versioning);
  }

  async readCredentials(): Promise<CredentialFacts> {
    return { keyTail: undefined, temporary: false, expiration: undefined, sources: ["memory"] };
  }

  async listOnce(prefix: string, now: () => Date, signal?: AbortSignal): Promise<ListOnce> {
    try {
      const n = await this.call("list", prefix, signal, () => this.currentKeys(prefix).length);
      return { ok: true, keyCount: Math.min(1, n), serverDate: this.world.now().toUTCString(), receivedAt: now() };
    } catch (error) {
      return { ok: false, error, serverDate: undefined, receivedAt: now() };
    }
  }

  async putWithSha256(key: string, body: Buffer, signal?: AbortSignal): Promise<{ checksum: string | undefined }> {
    const checksum = createHash("sha256").update(body).digest("base64");
    await this.call("put", key, signal, () => this.store(key, Buffer.from(body), `"${md5(body).toString("hex")}"`, { contentType: "application/octet-stream" }, checksum));
    return { checksum };
  }

  async getWithChecksum(key: string, signal?: AbortSignal): Promise<{ body: Buffer; checksum: string | undefined }> {
    return this.call("get", key, signal, () => {
      const v = currentOf(this.b, key);
      if (!v) throw new RemoteError(`GET ${this.bucket}/${key}: NoSuchKey`);
      return { body: Buffer.from(v.body), checksum: v.checksumSha256 };
    });
  }

  async listPaged(prefix: string, pageSize: number, signal?: AbortSignal): Promise<{ keys: string[]; pages: number }> {
    const keys = await this.call("list", prefix, signal, () => this.currentKeys(prefix));
    return { keys, pages: Math.max(1, Math.ceil(keys.length / pageSize)) };
  }

  async deleteAllVersions(prefix: string, signal?: AbortSignal): Promise<{ deleted: number; failed: { key: string; error: string }[] }> {
    return this.call("delete", prefix, signal, () => {
      let deleted = 0;
      for (const [k, vs] of [...this.b.keys]) {
        if (!k.startsWith(prefix)) continue;
        deleted += vs.length;
        this.b.keys.delete(k);
      }
      return { deleted, failed: [] };
    });
  }

  destroy(): void {}

  /** If-Match / If-None-Match on a PUT, as AWS checks them; a failure throws {@link ConditionFailed}. */
  private checkWriteCondition(key: string, cond: { ifMatch?: string; ifNoneMatch?: string }): void {
    const vs = this.b.keys.get(key);
    const last = vs?.[vs.length - 1];
    const cur = last && !last.deleteMarker ? last : undefined;
    if (cond.ifNoneMatch === "*") {
      if (cur) throw new ConditionFailed(`conditional write of ${key} failed (HTTP 412)`);
      if (last?.deleteMarker && this.quirks.refusesCreateOverDeleteMarker) throw new ConditionFailed(`conditional write of ${key} failed (HTTP 412)`);
    }
    // AWS answers If-Match on a key that is not there with 404 NoSuchKey, which S3Store passes on
    // as a RemoteError (not a lost race); another ETag is 412.
    if (cond.ifMatch !== undefined && !cur) throw new RemoteError(`PUT ${this.bucket}/${key} with If-Match: NoSuchKey (HTTP 404)`);
    if (cond.ifMatch !== undefined && cur && unquoteEtag(cur.etag) !== unquoteEtag(cond.ifMatch)) {
      throw new ConditionFailed(`conditional write of ${key} failed (HTTP 412)`);
    }
  }

  /** A new current version of `key` (replacing the "null" one where the bucket keeps no versions). */
  private store(key: string, body: Buffer, etag: string, attrs: ObjectAttrs, checksumSha256?: string): PutResult {
    if (this.quirks.refusesPrefixClash) this.checkPrefixClash(key);
    const b = this.b;
    const versionId = b.versioning === "Enabled" ? this.world.versionId() : "null";
    const v: StoredVersion = { versionId, body, etag, attrs: copyAttrs(attrs), deleteMarker: false, lastModified: this.world.now(), checksumSha256 };
    this.push(key, v);
    return { etag, versionId: this.vid(v) };
  }

  private remove(key: string): void {
    const b = this.b;
    if (b.versioning === "off") {
      b.keys.delete(key);
      return;
    }
    if (!b.keys.has(key)) return;
    const versionId = b.versioning === "Enabled" ? this.world.versionId() : "null";
    this.push(key, { versionId, body: Buffer.alloc(0), etag: "", attrs: { contentType: "" }, deleteMarker: true, lastModified: this.world.now() });
  }

  private push(key: string, v: StoredVersion): void {
    const vs = this.b.keys.get(key) ?? [];
    // Versioning off or suspended: the "null" version is replaced, other versions stay.
    const kept = v.versionId === "null" ? vs.filter((x) => x.versionId !== "null") : vs;
    kept.push(v);
    this.b.keys.set(key, kept);
  }

  /** versitygw stores keys as files: `a/b` cannot exist beside an object `a`, nor `a` beside `a/…`. */
  private checkPrefixClash(key: string): void {
    const parts = key.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      if (currentOf(this.b, parent)) throw new RemoteError(`PUT ${this.bucket}/${key}: ${parent} is an object, not a directory (ObjectParentIsFile)`);
    }
    const dir = key + "/";
    for (const k of this.b.keys.keys()) if (k.startsWith(dir) && currentOf(this.b, k)) throw new RemoteError(`PUT ${this.bucket}/${key}: ${key} is a directory of other objects (ExistingObjectIsDirectory)`);
  }

  private currentKeys(prefix: string): string[] {
    const out: string[] = [];
    for (const k of this.b.keys.keys()) if (k.startsWith(prefix) && currentOf(this.b, k)) out.push(k);
    return out.sort((a, z) => Buffer.compare(Buffer.from(a), Buffer.from(z)));
  }
}

/** The ETag S3 gives a multipart upload: md5 of the parts' md5s, `-N`; one part is a plain PUT. */
export function multipartEtag(bytes: Buffer, partSize: number): string {
  const n = Math.max(1, Math.ceil(bytes.length / partSize));
  if (n === 1) return `"${md5(bytes).toString("hex")}"`;
  const sums: Buffer[] = [];
  for (let i = 0; i < n; i++) sums.push(md5(bytes.subarray(i * partSize, (i + 1) * partSize)));
  return `"${md5(Buffer.concat(sums)).toString("hex")}-${n}"`;
}

function copyAttrs(a: ObjectAttrs): ObjectAttrs {
  // S3 stores user metadata names in lower case.
  const metadata = a.metadata ? Object.fromEntries(Object.entries(a.metadata).map(([k, v]) => [k.toLowerCase(), v])) : undefined;
  return { contentType: a.contentType, ...(a.cacheControl ? { cacheControl: a.cacheControl } : {}), ...(metadata ? { metadata } : {}) };
}
