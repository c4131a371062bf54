/**
 * Signed generations (docs/bucket-format.md, "signature"): the canonical digest of a generation's
 * files, the payload a writer signs with its ed25519 key, and the checks a node makes with the
 * public keys it trusts. Pure: ed25519 and sha256 are computation; reading key files is the
 * adapter's (adapters/keys.ts).
 *
 * What is signed is what a node checks and what every copy of a generation shares: the site, the
 * generation number, and per file path, size, sha256, mode and mtime. Not the ETags, version ids or
 * manifest bytes, which differ per bucket: a regional head carries the primary's signature
 * unchanged, and the replicator holds no key.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import { UntrustedHead } from "./errors.ts";
import { compareUtf8 } from "./paths.ts";

/** The first line of the signed payload. */
export const SIGNED_FORMAT = "fansync-signed-generation/1";
const FILES_FORMAT = "fansync-files/1";
/** How a public key is written: `ed25519:` and the raw 32-byte key in base64url. */
const PUBLIC_RE = /^ed25519:([A-Za-z0-9_-]{43})$/;
// A site id becomes a line of the signed payload: printable, no line breaks, bounded.
// eslint-disable-next-line no-control-regex
const SITE_BAD_RE = /[\u0000-\u001f\u007f-\u009f]/;
const SITE_MAX_BYTES = 256;

/** The facts of one file that a signature covers. */
export interface SignedFacts {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
  readonly mode: number;
  readonly mtimeMs: number;
}

/** `head.signature`: who signed which generation of which site, and the signature itself. */
export interface HeadSignature {
  readonly alg: "ed25519";
  /** The signing key's id ({@link keyIdOf}): which trusted key to verify with. */
  readonly keyId: string;
  /** The site this generation belongs to: a head copied from another site's bucket does not verify for this one. */
  readonly site: string;
  /** Number of files (also the bound a reader puts on the manifest it inflates). */
  readonly files: number;
  /** {@link filesDigest} of the generation's files. */
  readonly filesSha256: string;
  /** When the writer signed (ISO 8601): `--max-age` measures from here. */
  readonly time: string;
  /**
   * Deletions of this generation the writer approved for every node (head.approvedDeletes): signed,
   * so that no one but the master can wave a deletion past a node's guard. Absent: none.
   */
  readonly approvedDeletes?: number | undefined;
  /** The ed25519 signature of {@link signedPayload}, base64. */
  readonly value: string;
}

/** A private key to sign with. */
export interface SigningKey {
  readonly keyId: string;
  readonly key: KeyObject;
  /** The matching public key, as `fansync keygen` prints it. */
  readonly publicText: string;
}

/** A public key a node trusts. */
export interface TrustedKey {
  readonly keyId: string;
  readonly key: KeyObject;
}

/** What a node accepts: any of `keys`; the site it follows (undefined: the first one it verified, pinned). */
export interface TrustPolicy {
  readonly keys: readonly TrustedKey[];
  readonly site: string | undefined;
}

function sha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * The canonical digest of a generation's files: sha256 of `fansync-files/1\n`, then one line per
 * file sorted by the UTF-8 bytes of its path: `path TAB size TAB sha256 TAB mode TAB mtimeMs LF`
 * (decimal integers). Valid paths hold no TAB or LF, so the lines cannot be forged by a name.
 */
export function filesDigest(files: Iterable<SignedFacts>): string {
  // UTF-8 byte order, compared on the strings (a manifest's map is already in this order: the sort
  // is then linear). Not a Buffer per path: at 1M files those were ~200 MB at a pull's end.
  const all = [...files].sort((a, b) => compareUtf8(a.path, b.path));
  const h = createHash("sha256").update(`${FILES_FORMAT}\n`);
  for (const f of all) {
    if (/[\t\n]/.test(f.path)) throw new UntrustedHead(`path ${JSON.stringify(f.path)} cannot be signed (TAB or LF)`);
    h.update(`${f.path}\t${f.size}\t${f.sha256}\t${f.mode}\t${f.mtimeMs}\n`);
  }
  return h.digest("hex");
}

/** The bytes an ed25519 signature covers: six LF-terminated lines, seven with an approval (docs/bucket-format.md). */
export function signedPayload(s: { readonly site: string; readonly generation: number; readonly files: number; readonly filesSha256: string; readonly time: string; readonly approvedDeletes?: number | undefined }): Buffer {
  const lines = [SIGNED_FORMAT, `site ${s.site}`, `generation ${s.generation}`, `files ${s.files}`, `filesSha256 ${s.filesSha256}`, `time ${s.time}`];
  // Only when there is one: a generation without approvals signs exactly as before.
  if (s.approvedDeletes) lines.push(`approvedDeletes ${s.approvedDeletes}`);
  return Buffer.from(lines.join("\n") + "\n", "utf8");
}

/** Why `site` cannot be a site id, or undefined. */
export function checkSite(site: string): string | undefined {
  if (site === "") return "the site id is empty";
  if (SITE_BAD_RE.test(site) || !site.isWellFormed()) return "the site id holds a control character or is not valid Unicode";
  if (Buffer.byteLength(site, "utf8") > SITE_MAX_BYTES) return `the site id is longer than ${SITE_MAX_BYTES} bytes`;
  return undefined;
}

/** Sign generation `generation` of `site`, whose files are `files`, at `time`. */
export function signGeneration(key: SigningKey, site: string, generation: number, files: Iterable<SignedFacts>, time: string, approvedDeletes = 0): HeadSignature {
  const list = [...files];
  const fields = { site, generation, files: list.length, filesSha256: filesDigest(list), time, ...(approvedDeletes > 0 ? { approvedDeletes } : {}) };
  const value = sign(null, signedPayload(fields), key.key).toString("base64");
  return { alg: "ed25519", keyId: key.keyId, site, files: fields.files, filesSha256: fields.filesSha256, time, ...(approvedDeletes > 0 ? { approvedDeletes } : {}), value };
}

/** The id of a public key: the first 16 hex digits of the sha256 of its raw 32 bytes. */
export function keyIdOf(pub: KeyObject): string {
  const x = pub.export({ format: "jwk" }).x as string;
  return sha256(Buffer.from(x, "base64url")).slice(0, 16);
}

/** The one-line text form of a public key (`ed25519:<base64url>`). */
export function publicKeyText(pub: KeyObject): string {
  return `ed25519:${pub.export({ format: "jwk" }).x as string}`;
}

/** A new key pair: the private key as PKCS#8 PEM, the public key as one line, and its id. */
export function generateSigningKeyPair(): { privatePem: string; publicText: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { privatePem: privateKey.export({ format: "pem", type: "pkcs8" }) as string, publicText: publicKeyText(publicKey), keyId: keyIdOf(publicKey) };
}

/** Parse a private key file's text (PKCS#8 PEM, ed25519); undefined when it is not one. */
export function parsePrivateKey(pem: string): SigningKey | undefined {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    return undefined;
  }
  if (key.asymmetricKeyType !== "ed25519") return undefined;
  const pub = createPublicKey(key);
  return { keyId: keyIdOf(pub), key, publicText: publicKeyText(pub) };
}

/**
 * Parse a public key: the `ed25519:<base64url>` line `fansync keygen` prints (a `.pub` file may add
 * comment lines starting with `#`); undefined when it holds none.
 */
export function parsePublicKey(text: string): TrustedKey | undefined {
  const line = text.split("\n").map((l) => l.trim()).find((l) => l !== "" && !l.startsWith("#")) ?? "";
  const m = PUBLIC_RE.exec(line);
  if (!m) return undefined;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: m[1] as string }, format: "jwk" });
  } catch {
    return undefined;
  }
  return { keyId: keyIdOf(key), key };
}

/** Validate the `signature` member of a head as read; a string says what is wrong with it. */
export function parseHeadSignature(v: unknown): HeadSignature | string {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "signature is not an object";
  const o = v as Record<string, unknown>;
  if (o.alg !== "ed25519") return `signature algorithm ${JSON.stringify(o.alg)} is not ed25519`;
  if (typeof o.keyId !== "string" || !/^[0-9a-f]{16}$/.test(o.keyId)) return "signature keyId is not 16 hex digits";
  if (typeof o.site !== "string" || checkSite(o.site) !== undefined) return "signature site is not a valid site id";
  if (!Number.isSafeInteger(o.files) || (o.files as number) < 0) return "signature files is not a non-negative integer";
  if (typeof o.filesSha256 !== "string" || !/^[0-9a-f]{64}$/.test(o.filesSha256)) return "signature filesSha256 is not a sha256";
  if (typeof o.time !== "string" || !Number.isFinite(Date.parse(o.time))) return "signature time is not a date";
  if (typeof o.value !== "string" || !/^[A-Za-z0-9+/]{86}==$/.test(o.value)) return "signature value is not a base64 ed25519 signature";
  if (o.approvedDeletes !== undefined && (!Number.isSafeInteger(o.approvedDeletes) || (o.approvedDeletes as number) < 1)) return "signature approvedDeletes is not a positive integer";
  const approved = o.approvedDeletes === undefined ? {} : { approvedDeletes: o.approvedDeletes as number };
  return { alg: "ed25519", keyId: o.keyId, site: o.site, files: o.files as number, filesSha256: o.filesSha256, time: o.time, ...approved, value: o.value };
}

/** A head as far as its signature is concerned. */
export interface SignedHeadView {
  readonly generation: number;
  readonly files: number;
  readonly signature?: HeadSignature | undefined;
  /** Set when the head has a `signature` member that is malformed. */
  readonly signatureProblem?: string | undefined;
}

/**
 * Check a head's signature against the trusted keys and the site the node follows (`site`: the
 * configured or pinned one, undefined on first use). Returns the verified signature; throws
 * {@link UntrustedHead} for an unsigned, malformed, foreign-key, forged or other-site head.
 */
export function verifyHeadSignature(head: SignedHeadView, keys: readonly TrustedKey[], site: string | undefined, where: string, subject = `the head of ${where}`): HeadSignature {
  const sig = head.signature;
  const it = `${subject} (generation ${head.generation})`;
  if (!sig) {
    throw new UntrustedHead(head.signatureProblem
      ? `${it} has a malformed signature: ${head.signatureProblem}`
      : `${it} is not signed, and this node only accepts signed generations`);
  }
  const key = keys.find((k) => k.keyId === sig.keyId);
  if (!key) {
    throw new UntrustedHead(`${it} is signed by key ${sig.keyId}, which this node does not trust (trusted: ${keys.map((k) => k.keyId).join(", ")})`);
  }
  const payload = signedPayload({ site: sig.site, generation: head.generation, files: sig.files, filesSha256: sig.filesSha256, time: sig.time, approvedDeletes: sig.approvedDeletes });
  if (!verify(null, payload, key.key, Buffer.from(sig.value, "base64"))) {
    throw new UntrustedHead(`the signature of ${subject} (generation ${head.generation}, key ${sig.keyId}) does not verify: ${subject.startsWith("the head") ? "the head" : "it"} was forged or altered`);
  }
  if (site !== undefined && sig.site !== site) {
    throw new UntrustedHead(`${subject} is signed for site ${JSON.stringify(sig.site)}, but this node follows site ${JSON.stringify(site)} (a head copied from another site's bucket?)`);
  }
  if (head.files !== sig.files) throw new UntrustedHead(`${subject} says ${head.files} files, its signature ${sig.files}`);
  return sig;
}

/**
 * The one check before anything is applied, signed again or copied (issue 22): the head verifies
 * ({@link verifyHeadSignature}) and `files` are the ones it signed. `what` names the files in the
 * refusal ("the manifest of generation 7 at s3://…"), `subject` what carries the signature (default:
 * the head). Returns the verified signature.
 */
export function verifyGeneration(head: SignedHeadView, files: Iterable<SignedFacts>, trust: TrustPolicy, where: string, what = `the manifest of generation ${head.generation} at ${where}`, subject?: string): HeadSignature {
  const sig = verifyHeadSignature(head, trust.keys, trust.site, where, subject);
  const list = [...files];
  const digest = filesDigest(list);
  if (digest !== sig.filesSha256) {
    throw new UntrustedHead(`${what} does not match the signed generation (signed: ${sig.files} files, digest ${sig.filesSha256.slice(0, 12)}…; found: ${list.length} files, digest ${digest.slice(0, 12)}…): it was swapped for another one, or edited`);
  }
  return sig;
}

/** The public half of a signing key, as a key to trust: a writer accepts what it signed itself. */
export function trustedKeyOf(k: SigningKey): TrustedKey {
  return { keyId: k.keyId, key: createPublicKey(k.key) };
}

/**
 * The files a node is about to apply must be the ones signed: a manifest (or journals) swapped for
 * another generation's, or edited, does not match the signed digest.
 */
export function filesMatchSignature(sig: HeadSignature, files: Iterable<SignedFacts>): boolean {
  return filesDigest(files) === sig.filesSha256;
}

/**
 * How a writer signs the heads it publishes: with its own key (the uploader, rollback), or by
 * carrying a signature made by the primary's writer (the replicator, which holds no key).
 */
export type GenerationSigning =
  | { readonly kind: "sign"; readonly key: SigningKey; readonly site: string }
  | { readonly kind: "carry"; readonly signature: HeadSignature };

/**
 * The `signature` member of a head about to be published, or nothing. A carried signature must fit
 * the files published under it: a region whose copy differs from what the primary signed is not
 * published (nodes would refuse it anyway).
 */
export function signatureFor(signing: GenerationSigning | undefined, generation: number, files: ReadonlyMap<string, SignedFacts>, time: string, approvedDeletes = 0): { signature?: HeadSignature } {
  if (!signing) return {};
  if (signing.kind === "sign") return { signature: signGeneration(signing.key, signing.site, generation, files.values(), time, approvedDeletes) };
  const sig = signing.signature;
  if (sig.files !== files.size || !filesMatchSignature(sig, files.values())) {
    throw new UntrustedHead(`generation ${generation} does not match the signature it would carry (signed ${sig.files} files with digest ${sig.filesSha256.slice(0, 12)}…): the primary's head does not fit its own manifest`);
  }
  return { signature: sig };
}
