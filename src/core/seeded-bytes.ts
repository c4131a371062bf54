/** Deterministic pseudo-random bytes (xorshift32): the demo's site and the tests' trees, reproducible from a seed. */

/** `n` bytes generated from `seed`; the same seed always gives the same bytes. */
export function seededBytes(seed: number, n: number): Buffer {
  const buf = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
  return buf;
}
