import assert from "node:assert/strict";
import { test } from "node:test";
import { GuardError } from "../../src/core/errors.ts";
import { allowedDeletes, checkDeleteGuard } from "../../src/core/guard.ts";

const base = { limit: { kind: "percent" as const, value: 50 }, force: false, what: "docroot" };

test("allows deletions within the limit", () => {
  assert.doesNotThrow(() => checkDeleteGuard({ ...base, deletes: 5, held: 10, remaining: 5 }));
  assert.equal(allowedDeletes({ kind: "count", value: 3 }, 100), 3);
  assert.equal(allowedDeletes({ kind: "percent", value: 10 }, 55), 5);
});

test("refuses more than the limit, naming the numbers", () => {
  assert.throws(() => checkDeleteGuard({ ...base, deletes: 6, held: 10, remaining: 4 }), (e: unknown) => e instanceof GuardError && /6 of 10/.test(e.message) && /50% of 10 files = 5/.test(e.message));
  assert.throws(() => checkDeleteGuard({ ...base, limit: { kind: "count", value: 2 }, deletes: 3, held: 100, remaining: 97 }), /--max-delete 2/);
});

test("an empty source never empties a non-empty side, whatever the limit", () => {
  assert.throws(() => checkDeleteGuard({ ...base, limit: { kind: "percent", value: 100 }, deletes: 4, held: 4, remaining: 0 }), /source is empty/);
});

test("--force lets everything through", () => {
  assert.doesNotThrow(() => checkDeleteGuard({ ...base, force: true, deletes: 10, held: 10, remaining: 0 }));
});

test("deletions the master approved do not count against a node's limit; the rest still does", () => {
  const two = { ...base, limit: { kind: "count" as const, value: 2 } };
  assert.throws(() => checkDeleteGuard({ ...two, deletes: 3, held: 40, remaining: 37 }), /refusing to delete 3 of 40/);
  assert.doesNotThrow(() => checkDeleteGuard({ ...two, deletes: 3, held: 40, remaining: 37, approved: 3 }));
  assert.doesNotThrow(() => checkDeleteGuard({ ...two, deletes: 5, held: 40, remaining: 35, approved: 3 }));
  assert.throws(() => checkDeleteGuard({ ...two, deletes: 6, held: 40, remaining: 34, approved: 3, hint: "do X" }),
    (e: unknown) => e instanceof GuardError && /\(3 of them approved by the master\)/.test(e.message) && e.hint === "do X");
  // An unapproved wipe (a wrong or empty prefix) is refused whatever else was approved.
  assert.throws(() => checkDeleteGuard({ ...two, deletes: 40, held: 40, remaining: 0, approved: 1 }), /source is empty/);
  assert.doesNotThrow(() => checkDeleteGuard({ ...two, deletes: 40, held: 40, remaining: 0, approved: 40 }));
});
