/**
 * Reused read buffers for small files: a push of 100k files read each one into a fresh Buffer,
 * garbage the young generation then had to sweep (and RSS to hold). A buffer goes back only once
 * the request that sent it finished, so no bytes are overwritten while they are on the wire.
 */

/** A free list of equal buffers; `take` makes a new one when none is free. */
export class BufferPool {
  readonly size: number;
  private readonly free: Buffer[] = [];
  private readonly keep: number;

  /** Buffers of `size` bytes; at most `keep` are kept while free. */
  constructor(size: number, keep: number) {
    this.size = size;
    this.keep = keep;
  }

  /** A buffer of {@link size} bytes, its contents undefined. */
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** Give a buffer back (one not of this pool's size is dropped). */
  give(buf: Buffer): void {
    if (buf.length === this.size && this.free.length < this.keep) this.free.push(buf);
  }
}

/**
 * Pools of a few sizes: a buffer of the smallest size that holds what is asked for, so the
 * buffers kept for 16 transfers of 10 KB files are 64 KiB each, not 1 MiB.
 */
export class SizedPools {
  private readonly pools: readonly BufferPool[];

  /** `sizes` ascending; at most `keep` buffers of each size are kept while free. */
  constructor(sizes: readonly number[], keep: number) {
    this.pools = sizes.map((s) => new BufferPool(s, keep));
  }

  /** The largest size served. */
  get largest(): number {
    return this.pools[this.pools.length - 1]?.size ?? 0;
  }

  /** A buffer of at least `bytes` bytes, or undefined when that is more than {@link largest}. */
  take(bytes: number): Buffer | undefined {
    return this.pools.find((p) => p.size >= bytes)?.take();
  }

  /** Give a buffer back to the pool of its size. */
  give(buf: Buffer): void {
    this.pools.find((p) => p.size === buf.length)?.give(buf);
  }
}
