/**
 * A pass-through stream that hashes (sha256) and counts what flows through it, so a streamed
 * transfer can be checked against the manifest after the last byte went out. With `expectBytes`
 * the stream fails at its end when fewer bytes came (`short`): a file truncated while it was read
 * must not leave a request waiting for bytes that never come.
 */
import { createHash } from "node:crypto";
import { Transform } from "node:stream";

/** The tap, and what it saw so far. */
export function hashingTap(expectBytes?: number): { stream: Transform; seen: () => { bytes: number; sha256: string; short: boolean } } {
  const h = createHash("sha256");
  let bytes = 0;
  let short = false;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      bytes += chunk.length;
      cb(null, chunk);
    },
    flush(cb) {
      short = expectBytes !== undefined && bytes !== expectBytes;
      cb(short ? new Error(`stream ended after ${bytes} of ${expectBytes} bytes`) : null);
    },
  });
  return { stream, seen: () => ({ bytes, sha256: h.copy().digest("hex"), short }) };
}
