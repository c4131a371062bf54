/** chooseSource: the puller's lag rule as a decision table. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { chooseSource, orderFrom } from "../../src/core/source-order.ts";

const cases = [
  // current, have, heads, maxLag → first, reason
  { name: "fresh node, all in step", v: { current: -1, have: 0, heads: [5, 5], maxLag: 10 }, first: 0, reason: "preferred" },
  { name: "preferred lags within maxLag", v: { current: 0, have: 3, heads: [3, 8], maxLag: 10 }, first: 0, reason: "preferred" },
  { name: "preferred lags beyond maxLag", v: { current: 0, have: 3, heads: [3, 20], maxLag: 10 }, first: 1, reason: "preferred-lags" },
  { name: "the freshest of three wins", v: { current: 0, have: 3, heads: [3, 9, 20], maxLag: 1 }, first: 2, reason: "preferred-lags" },
  { name: "preferred unreachable: keep the order, errors fall through", v: { current: 0, have: 3, heads: [undefined, 20], maxLag: 1 }, first: 0, reason: "preferred" },
  { name: "on a fallback, preferred still behind this node", v: { current: 1, have: 7, heads: [6], maxLag: 10 }, first: 1, reason: "preferred-behind-node" },
  { name: "on a fallback, preferred caught up", v: { current: 1, have: 7, heads: [7], maxLag: 10 }, first: 0, reason: "preferred-caught-up" },
  { name: "on a fallback, preferred unreachable", v: { current: 1, have: 7, heads: [undefined], maxLag: 10 }, first: 1, reason: "preferred-unreachable" },
] as const;

for (const c of cases) {
  test(c.name, () => {
    assert.deepEqual(chooseSource(c.v), { first: c.first, reason: c.reason });
  });
}

test("orderFrom puts the chosen source first and keeps the others in preference order", () => {
  assert.deepEqual(orderFrom(["us", "eu", "primary"], 2), ["primary", "us", "eu"]);
  assert.deepEqual(orderFrom(["us", "primary"], 0), ["us", "primary"]);
});
