/**
 * `fansync keygen <keyfile>`: make an ed25519 key pair for signed generations. The private key goes
 * to <keyfile> (mode 0600, for the master: push, watch, rollback --signing-key), the public key to
 * <keyfile>.pub and stdout (for the nodes: pull --trusted-key). An existing file is never replaced.
 */
import path from "node:path";
import { writeKeyPair } from "../adapters/keys.ts";

/** Write a new key pair and print the public key. */
export async function keygen(keyfile: string): Promise<void> {
  const file = path.resolve(keyfile);
  const { publicText, keyId, publicFile } = await writeKeyPair(file);
  process.stderr.write(`fansync: wrote the private key ${file} (mode 0600: keep it on the master only) and the public key ${publicFile} (key id ${keyId})\n`);
  process.stdout.write(`${publicText}\n`);
}
