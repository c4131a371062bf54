import assert from "node:assert/strict";
import { test } from "node:test";
import { UntrustedHead } from "../../src/core/errors.ts";
import { gunzipSync, gzipSync } from "node:zlib";
import { type Entry, type FileMap, metaKeys, parseHead, parseSignedManifest, serializeHead, serializeManifest, sha256Hex } from "../../src/core/manifest.ts";
import {
  filesDigest, filesMatchSignature, generateSigningKeyPair, parseHeadSignature, parsePrivateKey, parsePublicKey, signatureFor, signedPayload, signGeneration,
  type SigningKey, type TrustedKey, trustedKeyOf, verifyGeneration, verifyHeadSignature,
} from "../../src/core/signing.ts";

const e = (path: string, n = 1, etag = `"${n}"`): Entry => ({ path, size: n, mtimeMs: 1_700_000_000_000 + n, mode: 0o644, sha256: sha256Hex(path), etag });
const map = (...entries: Entry[]): FileMap => new Map(entries.map((x) => [x.path, x]));

function keyPair(): { signing: SigningKey; trusted: TrustedKey } {
  const pair = generateSigningKeyPair();
  const signing = parsePrivateKey(pair.privatePem);
  const trusted = parsePublicKey(pair.publicText);
  assert.ok(signing && trusted);
  assert.equal(signing.keyId, pair.keyId);
  assert.equal(trusted.keyId, pair.keyId);
  assert.equal(signing.publicText, pair.publicText);
  return { signing, trusted };
}

const SITE = "s3://site-primary/www/";
const head = (generation: number, files: FileMap, signing?: SigningKey, site = SITE) => ({
  generation,
  files: files.size,
  ...(signing ? { signature: signGeneration(signing, site, generation, files.values(), "2026-01-01T00:00:00.000Z") } : {}),
});

test("the files digest covers path, size, sha256, mode and mtime, not ETags, version ids or order", () => {
  const a = map(e("b.html"), e("a/x.css", 2), e("caf\u00e9", 3));
  const d = filesDigest(a.values());
  assert.match(d, /^[0-9a-f]{64}$/);
  // Another bucket's copy: other ETags and version ids, other insertion order: the same digest.
  const regional = map(...[...a.values()].reverse().map((x) => ({ ...x, etag: '"regional"', versionId: "v1" })));
  assert.equal(filesDigest(regional.values()), d);
  const changed: [string, Partial<Entry>][] = [["size", { size: 9 }], ["sha256", { sha256: sha256Hex("other") }], ["mode", { mode: 0o755 }], ["mtime", { mtimeMs: 1 }], ["path", { path: "b.htm" }]];
  for (const [what, patch] of changed) {
    const m = map(...[...a.values()].map((x) => (x.path === "b.html" ? { ...x, ...patch } : x)));
    assert.notEqual(filesDigest(m.values()), d, `${what} is covered`);
  }
  assert.notEqual(filesDigest(map(e("b.html"), e("a/x.css", 2)).values()), d, "a missing file changes it");
  assert.notEqual(filesDigest([]), d);
  // NFC and NFD twins are different names, sorted by their UTF-8 bytes.
  assert.notEqual(filesDigest(map(e("caf\u00e9")).values()), filesDigest(map(e("cafe\u0301")).values()));
});

test("the files digest is over the paths in UTF-8 byte order (astral characters after U+E000-U+FFFF), as a reader in another language rebuilds it", () => {
  // UTF-16 code unit order puts the astral "\u{1F600}" (a surrogate pair) before U+FFFD; UTF-8 byte order puts it after.
  const paths = ["z", "a/\uFFFD", "a/\u{1F600}", "a/\uE000", "a/\u00e9", "a/e", "a/\u{10000}x"];
  const files = map(...paths.map((p, i) => e(p, i + 1)));
  const lines = [...files.values()]
    .sort((x, y) => Buffer.compare(Buffer.from(x.path), Buffer.from(y.path)))
    .map((f) => `${f.path}\t${f.size}\t${f.sha256}\t${f.mode}\t${f.mtimeMs}\n`);
  assert.equal(filesDigest(files.values()), sha256Hex(`fansync-files/1\n${lines.join("")}`));
});

test("the signed payload is six lines that a reader in another language can rebuild", () => {
  const p = signedPayload({ site: "www.example.com", generation: 42, files: 3, filesSha256: "a".repeat(64), time: "2026-01-01T00:00:00.000Z" });
  assert.equal(p.toString("utf8"), `fansync-signed-generation/1\nsite www.example.com\ngeneration 42\nfiles 3\nfilesSha256 ${"a".repeat(64)}\ntime 2026-01-01T00:00:00.000Z\n`);
});

test("a signed head verifies under its key and survives the head's round trip", () => {
  const { signing, trusted } = keyPair();
  const files = map(e("index.html"), e("css/site.css", 2));
  const sig = signGeneration(signing, SITE, 7, files.values(), "2026-01-01T00:00:00.000Z");
  const meta = "www/.fansync/";
  const h = { format: "fansync-head/1" as const, generation: 7, manifestKey: metaKeys.manifest(meta, 7), manifestSha256: "b".repeat(64), files: 2, bytes: 3, oldestJournal: 0, writer: "w", time: sig.time, signature: sig };
  const back = parseHead(serializeHead(h), meta);
  assert.deepEqual(back.signature, sig);
  assert.deepEqual(verifyHeadSignature(back, [trusted], SITE, "s3://x/"), sig);
  assert.ok(filesMatchSignature(sig, files.values()));
  assert.ok(!filesMatchSignature(sig, map(e("index.html")).values()));
  // With the site unknown (first use), any site signed by a trusted key is accepted (and then pinned).
  assert.equal(verifyHeadSignature(back, [trusted], undefined, "s3://x/").site, SITE);
});

test("a node refuses unsigned, malformed, foreign, forged, other-site and miscounted heads", () => {
  const { signing, trusted } = keyPair();
  const other = keyPair();
  const files = map(e("index.html"));
  const good = head(3, files, signing);
  const refuse = (h: Parameters<typeof verifyHeadSignature>[0], re: RegExp, keys = [trusted], site: string | undefined = SITE) =>
    assert.throws(() => verifyHeadSignature(h, keys, site, "s3://region/www/"), (err: unknown) => err instanceof UntrustedHead && re.test(err.message));
  refuse(head(3, files), /is not signed/);
  refuse({ generation: 3, files: 1, signatureProblem: "signature keyId is not 16 hex digits" }, /malformed signature: signature keyId/);
  refuse(head(3, files, other.signing), /signed by key [0-9a-f]{16}, which this node does not trust/);
  const sig = good.signature;
  refuse({ ...good, signature: { ...sig, keyId: sig.keyId, value: other.signing && signGeneration(other.signing, SITE, 3, files.values(), sig.time).value } }, /does not verify/);
  refuse({ ...good, generation: 4 }, /does not verify/, [trusted]);
  refuse({ ...good, signature: { ...sig, filesSha256: "0".repeat(64) } }, /does not verify/);
  refuse({ ...good, signature: { ...sig, time: "2030-01-01T00:00:00.000Z" } }, /does not verify/);
  refuse(head(3, files, signing, "s3://other-site/www/"), /signed for site "s3:\/\/other-site\/www\/", but this node follows site/);
  refuse({ ...good, files: 9 }, /says 9 files, its signature 1/);
  // Rotation: either of two trusted keys is accepted.
  assert.ok(verifyHeadSignature(head(3, files, other.signing), [trusted, other.trusted], SITE, "x"));
});

test("a head's signature member is validated field by field", () => {
  const { signing } = keyPair();
  const sig = signGeneration(signing, SITE, 1, [], "2026-01-01T00:00:00.000Z");
  assert.deepEqual(parseHeadSignature(JSON.parse(JSON.stringify(sig))), sig);
  const bad: [string, unknown][] = [
    ["not an object", "sig"], ["rsa", { ...sig, alg: "rsa" }], ["keyId", { ...sig, keyId: "xyz" }], ["site", { ...sig, site: "a\nb" }],
    ["files", { ...sig, files: -1 }], ["digest", { ...sig, filesSha256: "abc" }], ["time", { ...sig, time: "soon" }], ["value", { ...sig, value: "AAAA" }],
  ];
  for (const [what, v] of bad) assert.equal(typeof parseHeadSignature(v), "string", what);
});

test("keys: one-line public keys and PKCS#8 private keys; anything else is refused", () => {
  const { signing } = keyPair();
  assert.ok(parsePublicKey(`# comment\n${signing.publicText}\n`), "a .pub file with a comment line");
  assert.equal(parsePublicKey("ed25519:short"), undefined);
  assert.equal(parsePublicKey("ssh-ed25519 AAAA"), undefined);
  assert.equal(parsePrivateKey("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"), undefined);
});

test("a carried signature must fit the files it is published with (a region's copy of the primary's)", () => {
  const { signing } = keyPair();
  const files = map(e("a"), e("b", 2));
  const sig = signGeneration(signing, SITE, 5, files.values(), "2026-01-01T00:00:00.000Z");
  const regional = map(...[...files.values()].map((x) => ({ ...x, etag: '"r"', versionId: "rv" })));
  assert.deepEqual(signatureFor({ kind: "carry", signature: sig }, 5, regional, "later"), { signature: sig });
  assert.throws(() => signatureFor({ kind: "carry", signature: sig }, 5, map(e("a")), "later"), /does not match the signature it would carry/);
  assert.deepEqual(signatureFor(undefined, 5, files, "t"), {});
  const own = signatureFor({ kind: "sign", key: signing, site: SITE }, 6, files, "2026-01-02T00:00:00.000Z").signature;
  assert.equal(own?.time, "2026-01-02T00:00:00.000Z");
  assert.ok(own && filesMatchSignature(own, regional.values()));
});

test("an approval of deletions is signed with the generation: it verifies, survives the round trip, and cannot be added or raised without the key", () => {
  const { signing, trusted } = keyPair();
  const files = map(e("index.html"), e("a.html", 2));
  const sig = signGeneration(signing, SITE, 9, files.values(), "2026-01-01T00:00:00.000Z", 3);
  assert.equal(sig.approvedDeletes, 3);
  assert.match(signedPayload({ site: SITE, generation: 9, files: 2, filesSha256: sig.filesSha256, time: sig.time, approvedDeletes: 3 }).toString(), /\napprovedDeletes 3\n$/);
  const meta = "www/.fansync/";
  const h = { format: "fansync-head/1" as const, generation: 9, manifestKey: metaKeys.manifest(meta, 9), manifestSha256: "b".repeat(64), files: 2, bytes: 3, oldestJournal: 0, writer: "w", time: sig.time, signature: sig };
  const back = parseHead(serializeHead(h), meta);
  assert.equal(verifyHeadSignature(back, [trusted], SITE, "s3://x/").approvedDeletes, 3);
  // Raised, or added to a signature made without one: the signature no longer verifies.
  assert.throws(() => verifyHeadSignature({ ...back, signature: { ...sig, approvedDeletes: 30 } }, [trusted], SITE, "s3://x/"), UntrustedHead);
  const plain = signGeneration(signing, SITE, 9, files.values(), sig.time);
  assert.equal(plain.approvedDeletes, undefined);
  assert.throws(() => verifyHeadSignature({ ...back, signature: { ...plain, approvedDeletes: 1 } }, [trusted], SITE, "s3://x/"), UntrustedHead);
  assert.equal(typeof parseHeadSignature({ ...sig, approvedDeletes: 0 }), "string", "an approval of 0 is written as none");
});

test("verifyGeneration: the head verifies and the files are the signed ones; a refusal names both digests; a writer trusts its own key", () => {
  const { signing, trusted } = keyPair();
  const files = map(e("index.html"), e("a.css", 2));
  const h = head(7, files, signing);
  const own = trustedKeyOf(signing);
  assert.equal(own.keyId, trusted.keyId);
  assert.equal(verifyGeneration(h, files.values(), { keys: [own], site: SITE }, "s3://x/").keyId, signing.keyId);
  const edited = map(e("index.html", 9), e("a.css", 2));
  assert.throws(() => verifyGeneration(h, edited.values(), { keys: [trusted], site: undefined }, "s3://x/"), (err: unknown) => {
    assert.ok(err instanceof UntrustedHead);
    assert.match(err.message, /the manifest of generation 7 at s3:\/\/x\/ does not match the signed generation \(signed: 2 files, digest [0-9a-f]{12}…; found: 2 files, digest [0-9a-f]{12}…\)/);
    return true;
  });
  // An unsigned head, and another subject than a head (a retained manifest).
  assert.throws(() => verifyGeneration(head(7, files), files.values(), { keys: [trusted], site: undefined }, "s3://x/"), /the head of s3:\/\/x\/ \(generation 7\) is not signed/);
  assert.throws(() => verifyGeneration(head(7, files), files.values(), { keys: [trusted], site: undefined }, "s3://x/", "m", "the manifest of retained generation 7"), /the manifest of retained generation 7 \(generation 7\) is not signed/);
});

test("a manifest's header carries the signature: read back as written, a malformed one as a problem, none in an unsigned one", async () => {
  const { signing } = keyPair();
  const files = map(e("index.html"), e("a.css", 2));
  const sig = signGeneration(signing, SITE, 3, files.values(), "2026-01-01T00:00:00.000Z");
  const bytes = await serializeManifest(3, files, sig);
  const back = await parseSignedManifest(bytes, sha256Hex(bytes), 3);
  assert.deepEqual(back.signature, sig);
  assert.deepEqual([...back.files.keys()].sort(), ["a.css", "index.html"]);
  const plain = await serializeManifest(3, files);
  assert.equal((await parseSignedManifest(plain, sha256Hex(plain), 3)).signature, undefined);
  const lines = gunzipSync(bytes).toString("utf8").split("\n");
  lines[0] = JSON.stringify({ ...(JSON.parse(lines[0] as string) as object), signature: { alg: "rsa" } });
  const bad = gzipSync(lines.join("\n"));
  const parsed = await parseSignedManifest(bad, sha256Hex(bad), 3);
  assert.equal(parsed.signature, undefined);
  assert.match(parsed.signatureProblem ?? "", /not ed25519/);
});
