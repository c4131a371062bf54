/**
 * Key files of signed generations: the writer's private key (PKCS#8 PEM, mode 0600, never logged)
 * and the public keys a node trusts (the `ed25519:…` line `fansync keygen` prints, inline or in a
 * file). Parsing is core/signing.ts; this module reads and writes the files.
 */
import { readFileSync, statSync } from "node:fs";
import { open, unlink } from "node:fs/promises";
import { UsageError } from "../core/errors.ts";
import { generateSigningKeyPair, parsePrivateKey, parsePublicKey, type SigningKey, type TrustedKey } from "../core/signing.ts";

/** Read the writer's private key. Like ssh, a key others can read is refused: it may have leaked. */
export function readSigningKey(file: string): SigningKey {
  let text: string;
  let mode: number;
  try {
    text = readFileSync(file, "utf8");
    mode = statSync(file).mode;
  } catch (err) {
    throw new UsageError(`cannot read the signing key ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { hint: "give the private key file fansync keygen wrote (--signing-key, config signingKey)" });
  }
  if ((mode & 0o077) !== 0) {
    throw new UsageError(`the signing key ${file} can be read by other users (mode ${(mode & 0o777).toString(8)})`, { hint: `chmod 600 ${file} (and consider the key leaked if others did read it: make a new one with fansync keygen)` });
  }
  const key = parsePrivateKey(text);
  if (!key) throw new UsageError(`${file} is not an ed25519 private key (PKCS#8 PEM)`, { hint: "make one with fansync keygen <file>" });
  return key;
}

/**
 * The public keys a node trusts: each `--trusted-key` / `trustedKeys` item is either the key itself
 * (`ed25519:…`) or a file holding it (a `.pub` file from fansync keygen).
 */
export function readTrustedKeys(items: readonly string[]): TrustedKey[] {
  const keys: TrustedKey[] = [];
  for (const item of items) {
    let text = item;
    if (!item.startsWith("ed25519:")) {
      try {
        text = readFileSync(item, "utf8");
      } catch (err) {
        throw new UsageError(`cannot read the trusted key ${item}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { hint: "give the public key (ed25519:…) or the .pub file fansync keygen wrote" });
      }
    }
    const key = parsePublicKey(text);
    if (!key) throw new UsageError(`trusted key ${item.startsWith("ed25519:") ? JSON.stringify(item) : item} is not an ed25519 public key`, { hint: "give the ed25519:… line fansync keygen prints, or its .pub file" });
    if (!keys.some((k) => k.keyId === key.keyId)) keys.push(key);
  }
  return keys;
}

/**
 * Write a new key pair: the private key to `file` (created with mode 0600, never over an existing
 * file) and the public key to `file.pub`. Returns the public key line and its id.
 */
export async function writeKeyPair(file: string): Promise<{ publicText: string; keyId: string; publicFile: string }> {
  const pair = generateSigningKeyPair();
  const publicFile = `${file}.pub`;
  // Both names are created exclusively: an existing key is never replaced (a node fleet trusts it).
  const priv = await createExclusive(file, 0o600);
  let pub;
  try {
    pub = await createExclusive(publicFile, 0o644);
  } catch (err) {
    await priv.close();
    await unlink(file).catch(() => undefined);
    throw err;
  }
  try {
    await priv.writeFile(pair.privatePem);
    await priv.sync();
    await pub.writeFile(`# fansync signing key ${pair.keyId}: give this line to the nodes (--trusted-key)\n${pair.publicText}\n`);
  } finally {
    await priv.close();
    await pub.close();
  }
  return { publicText: pair.publicText, keyId: pair.keyId, publicFile };
}

async function createExclusive(file: string, mode: number) {
  try {
    return await open(file, "wx", mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new UsageError(`${file} already exists; refusing to overwrite a key`, { hint: "choose another file name, or remove the old key yourself if it is really no longer used" });
    throw new UsageError(`cannot create ${file}: ${code ?? String(err)}`);
  }
}
