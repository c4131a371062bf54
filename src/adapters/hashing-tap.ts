/**
 * A pass-through stream that hashes (sha256) and counts what flows through it, so a streamed upload
 * can be checked against the manifest after the last byte went out.
 */
import { createHash } from "node:crypto";
import { Transform } from "node:stream";

/** The tap, and what it saw so far. */
export function hashingTap(): { stream: Transform; seen: () => { bytes: number; sha256: string } } {
  const h = createHash("sha256");
  let bytes = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  return { stream, seen: () => ({ bytes, sha256: h.copy().digest("hex") }) };
}
