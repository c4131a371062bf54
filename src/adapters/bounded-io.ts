/**
 * Bounds on what one request may cost (issue 22): how many bytes of a body fansync reads, and how
 * long a request may take in all. Both data paths (the SDK client's request handler and the lean
 * HTTP path) and every read of S3Store go through these, so no call site can forget a bound:
 *
 * - a body is never read past the cap its caller declares (head.json 1 MiB, a journal or manifest
 *   what the head allows, an object its manifest size): a larger declared Content-Length is refused
 *   before a byte is read, and a body that runs past the cap is cut at cap + 1 byte;
 * - an error answer's body is read to at most {@link ERROR_BODY_MAX_BYTES}, then the connection is
 *   dropped (a 2 GiB 503 page costs a few KiB per attempt, not 2 GiB);
 * - a request ends by its deadline: the request timeout plus time for the bytes it moved at
 *   {@link REQUEST_FLOOR_BYTES_PER_S}. An inactivity timeout alone never fires on a body that
 *   trickles one byte every 100 ms; this deadline does, and a healthy transfer of any size keeps
 *   extending its own.
 */
import { Transform, type Readable } from "node:stream";
import { IntegrityError } from "../core/errors.ts";
import { formatBytes } from "../core/units.ts";

/** The most of an error answer's body that is read (an S3 error document is a few hundred bytes). */
export const ERROR_BODY_MAX_BYTES = 8 * 1024;

/** The slowest average rate a request may move its bytes at, past its base timeout: 256 KiB/s. */
export const REQUEST_FLOOR_BYTES_PER_S = 256 * 1024;

/** A body larger than its caller's cap: refused before it is parsed, verified or written (exit 8). */
export class BodyTooLarge extends IntegrityError {
  override name = "BodyTooLarge";
  constructor(what: string, maxBytes: number, declared: number | undefined) {
    const how = declared !== undefined && declared > maxBytes ? `the server declares ${formatBytes(declared)}: refused unread` : `reading stopped at ${formatBytes(maxBytes)} + 1 byte`;
    super(`${what} is larger than the ${formatBytes(maxBytes)} it may be (${how})`, {
      hint: "nothing local was changed; whoever can write the bucket (or a proxy on the way) sent more than fansync ever writes: check what wrote that key",
    });
  }
}

/** The Content-Length an answer declares, if it is a number. */
export function declaredLength(v: string | string[] | number | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined || s === "") return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/**
 * `body` cut at `maxBytes`: the stream it returns errors with {@link BodyTooLarge} at the first
 * byte past the cap, and the source is destroyed then (its connection dropped, nothing more read).
 * A declared length above the cap is refused before any byte is read.
 */
export function capBody(body: Readable, maxBytes: number, what: string, declared?: number): Readable {
  if (declared !== undefined && declared > maxBytes) {
    body.destroy();
    const out = new Transform();
    process.nextTick(() => out.destroy(new BodyTooLarge(what, maxBytes, declared)));
    return out;
  }
  let n = 0;
  const cap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      if (n > maxBytes) {
        body.unpipe(cap);
        body.destroy();
        cb(new BodyTooLarge(what, maxBytes, declared));
        return;
      }
      cb(null, chunk);
    },
  });
  body.on("error", (err) => cap.destroy(err));
  cap.on("close", () => {
    if (!body.readableEnded) body.destroy();
  });
  return body.pipe(cap);
}

/** Read `body` whole, but never more than `maxBytes` ({@link BodyTooLarge} past it, the source destroyed). */
export async function readCapped(body: Readable, maxBytes: number, what: string, declared?: number): Promise<Buffer> {
  if (declared !== undefined && declared > maxBytes) {
    body.destroy();
    throw new BodyTooLarge(what, maxBytes, declared);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of body) {
      n += (c as Buffer).length;
      if (n > maxBytes) throw new BodyTooLarge(what, maxBytes, declared);
      chunks.push(c as Buffer);
    }
  } finally {
    if (!body.readableEnded) body.destroy();
  }
  return Buffer.concat(chunks, n);
}

/**
 * The start of an error answer's body, at most {@link ERROR_BODY_MAX_BYTES}; a longer body is not
 * read on: its connection is dropped (the keep-alive socket is not worth the rest of the body).
 * Never throws: a body cut short still has its status.
 */
export async function readErrorBody(body: Readable): Promise<{ bytes: Buffer; cut: boolean }> {
  const chunks: Buffer[] = [];
  let n = 0;
  let cut = false;
  try {
    for await (const c of body) {
      const b = c as Buffer;
      chunks.push(b.subarray(0, Math.max(0, ERROR_BODY_MAX_BYTES - n)));
      n += b.length;
      if (n >= ERROR_BODY_MAX_BYTES) {
        cut = n > ERROR_BODY_MAX_BYTES || !body.readableEnded;
        break;
      }
    }
  } catch {
    // cut short by the peer or by the deadline
  } finally {
    if (!body.readableEnded) {
      cut = true;
      body.destroy();
    }
  }
  return { bytes: Buffer.concat(chunks), cut };
}

/**
 * The deadline of one request: `baseMs` plus the time its bytes take at the floor rate. `moved`
 * counts bytes as they go (the body sent, the body received), each extending the deadline; when it
 * passes, `onExpire` runs once with a TimeoutError (the caller aborts the request and its body).
 * The timer is re-armed at each expiry for what moved meanwhile: one timer per request, no work per chunk.
 */
export class RequestDeadline {
  private readonly started = Date.now();
  private bytes = 0;
  private received: () => number = () => 0;
  private timer: NodeJS.Timeout | undefined;
  private done = false;
  private readonly baseMs: number;
  private readonly onExpire: (err: Error) => void;

  constructor(baseMs: number, onExpire: (err: Error) => void) {
    this.baseMs = baseMs;
    this.onExpire = onExpire;
    this.arm();
  }

  /** `n` more bytes moved: the deadline moves by their time at the floor rate. */
  moved(n: number): void {
    this.bytes += n;
  }

  /**
   * Follow a response body: the bytes its socket has read since count, and its end or close ends
   * the deadline. The socket's counter is read when the timer fires (no `data` listener: that would
   * switch the body to flowing mode before its consumer is attached).
   */
  follow(body: Readable & { readonly socket?: { readonly bytesRead: number } | null }): void {
    const socket = body.socket ?? undefined;
    if (socket) {
      const start = socket.bytesRead;
      this.received = () => socket.bytesRead - start;
    }
    body.once("close", () => this.dispose());
    body.once("end", () => this.dispose());
  }

  /** The request finished (or failed otherwise): no deadline any more. */
  dispose(): void {
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private moves(): number {
    return this.bytes + this.received();
  }

  private allowedMs(): number {
    return this.baseMs + (this.moves() / REQUEST_FLOOR_BYTES_PER_S) * 1000;
  }

  private arm(): void {
    if (this.done) return;
    const left = this.started + this.allowedMs() - Date.now();
    if (left <= 0) {
      this.done = true;
      const e = new Error(`the request took longer than ${Math.round(this.allowedMs())} ms (its timeout plus ${formatBytes(REQUEST_FLOOR_BYTES_PER_S)}/s for the ${formatBytes(this.moves())} it moved): the server is too slow or a body trickles`);
      e.name = "TimeoutError";
      this.onExpire(e);
      return;
    }
    this.timer = setTimeout(() => this.arm(), left);
    this.timer.unref();
  }
}
