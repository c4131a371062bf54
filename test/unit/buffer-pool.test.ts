import assert from "node:assert/strict";
import { test } from "node:test";
import { SizedPools } from "../../src/adapters/buffer-pool.ts";

test("a sized pool hands out the smallest buffer that holds the request, and reuses what comes back", () => {
  const pools = new SizedPools([64, 1024], 2);
  assert.equal(pools.largest, 1024);
  const a = pools.take(10) as Buffer;
  assert.equal(a.length, 64);
  assert.equal((pools.take(64) as Buffer).length, 64);
  assert.equal((pools.take(65) as Buffer).length, 1024);
  assert.equal(pools.take(1025), undefined);
  pools.give(a);
  assert.equal(pools.take(1), a, "reused");
  pools.give(Buffer.alloc(100));
  assert.notEqual((pools.take(100) as Buffer).length, 100, "a foreign size is dropped");
});
