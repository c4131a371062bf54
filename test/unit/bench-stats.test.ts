import { test } from "node:test";
import assert from "node:assert/strict";
import { median, percentile, ratio, summarize } from "../../bench/lib/stats.ts";

test("median of odd and even counts", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
});

test("median does not reorder the caller's array", () => {
  const xs = [3, 1, 2];
  median(xs);
  assert.deepEqual(xs, [3, 1, 2]);
});

test("percentiles interpolate between closest ranks", () => {
  const xs = Array.from({ length: 101 }, (_, i) => i); // 0..100
  assert.equal(percentile(xs, 0), 0);
  assert.equal(percentile(xs, 95), 95);
  assert.equal(percentile(xs, 100), 100);
  assert.equal(percentile([10, 20], 95), 19.5);
  assert.equal(percentile([5], 95), 5);
});

test("percentile rejects empty input and p out of range", () => {
  assert.throws(() => percentile([], 50), RangeError);
  assert.throws(() => percentile([1], 101), RangeError);
  assert.throws(() => percentile([1], Number.NaN), RangeError);
});

test("summarize gives n, median, min, max", () => {
  assert.deepEqual(summarize([2.5, 1, 9]), { n: 3, median: 2.5, min: 1, max: 9 });
  assert.throws(() => summarize([]), RangeError);
});

test("ratio is undefined when a side is missing or the divisor is 0", () => {
  assert.equal(ratio(1, 4), 0.25);
  assert.equal(ratio(undefined, 4), undefined);
  assert.equal(ratio(1, undefined), undefined);
  assert.equal(ratio(1, 0), undefined);
});
