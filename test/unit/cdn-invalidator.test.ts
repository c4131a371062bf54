/** The CDN invalidator (engine/cdn-invalidator.ts) on an in-memory CDN: one invalidation per generation, retries, limits. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { CdnApi } from "../../src/adapters/cloudfront.ts";
import { CdnInvalidator } from "../../src/engine/cdn-invalidator.ts";
import { fakeLog } from "../helpers/fake-log.ts";

/** An in-memory CDN: records invalidations; `fail` answers the next calls with these errors. */
function memoryCdn(fail: string[] = []) {
  const made: { dist: string; paths: readonly string[]; reference: string }[] = [];
  let release: (() => void) | undefined;
  const api: CdnApi & { made: typeof made; hold: () => void } = {
    made,
    hold: () => {
      const p = new Promise<void>((r) => (release = r));
      api.create = async (dist, paths, reference) => {
        await p;
        return create(dist, paths, reference);
      };
    },
    create: (dist, paths, reference) => create(dist, paths, reference),
    inProgress: async () => false,
  };
  async function create(dist: string, paths: readonly string[], reference: string): Promise<string> {
    const f = fail.shift();
    if (f) throw Object.assign(new Error(f), { name: f, $metadata: { httpStatusCode: f === "AccessDenied" ? 403 : 400 } });
    made.push({ dist, paths, reference });
    return `I${made.length}`;
  }
  return { api, made, releaseHeld: () => release?.() };
}

const deps = () => ({ ...fakeLog(), signal: new AbortController().signal, now: () => new Date() });
const gen = (generation: number, changed: string[], deleted: string[] = [], location = "s3://b/www/") => ({ location, generation, changed, deleted });

test("one invalidation per generation and distribution, naming exactly its paths", async () => {
  const { api, made } = memoryCdn();
  const d = deps();
  const inv = new CdnInvalidator([{ id: "E1", location: undefined }, { id: "E2", location: "s3://b/www/" }, { id: "E3", location: "s3://other/" }], api, d);
  inv.notify(gen(2, ["a.html", "css/x.css"], ["old.js"]));
  await inv.flush();
  inv.notify(gen(3, [], []));
  inv.notify(gen(4, ["b.html"]));
  await inv.flush();
  assert.deepEqual(made.map((m) => [m.dist, m.paths]), [
    ["E1", ["/a.html", "/css/x.css", "/old.js"]],
    ["E2", ["/a.html", "/css/x.css", "/old.js"]],
    ["E1", ["/b.html"]],
    ["E2", ["/b.html"]],
  ], "E3 serves another location; generation 3 changed nothing");
});

test("a backlog goes out as one invalidation; the writer never waits", async () => {
  const cdn = memoryCdn();
  cdn.api.hold();
  const inv = new CdnInvalidator([{ id: "E1", location: undefined }], cdn.api, deps());
  inv.notify(gen(2, ["a.html"]));
  // While the first is held, two more generations come: notify returned at once each time.
  inv.notify(gen(3, ["b.html"]));
  inv.notify(gen(4, [], ["c.html"]));
  cdn.releaseHeld();
  await inv.flush();
  assert.deepEqual(cdn.made.map((m) => m.paths), [["/a.html"], ["/b.html", "/c.html"]]);
  assert.notEqual(cdn.made[0]?.reference, cdn.made[1]?.reference);
});

test("retryable failures are retried with backoff; a final one is logged and given up", async () => {
  const cdn = memoryCdn(["Throttling", "TooManyInvalidationsInProgress"]);
  const d = deps();
  const inv = new CdnInvalidator([{ id: "E1", location: undefined }], cdn.api, d, { firstPauseMs: 5 });
  inv.notify(gen(2, ["a.html"]));
  await inv.flush();
  assert.deepEqual(cdn.made.map((m) => m.paths), [["/a.html"]]);
  assert.equal(d.lines.filter((l) => l.msg.includes("retrying")).length, 2);

  const denied = memoryCdn(["AccessDenied"]);
  const d2 = deps();
  const inv2 = new CdnInvalidator([{ id: "E1", location: undefined }], denied.api, d2, { firstPauseMs: 5 });
  inv2.notify(gen(2, ["a.html"]));
  await inv2.flush();
  assert.equal(denied.made.length, 0);
  const err = d2.lines.find((l) => l.level === "error");
  assert.match(err?.msg ?? "", /CDN invalidation failed.*create-invalidation --distribution-id E1/);
});

test("CloudFront's 15 wildcards in progress: the 16th waits (and is given up after its tries), never sent over the limit", async () => {
  const cdn = memoryCdn();
  cdn.api.inProgress = async () => true;
  const d = deps();
  const inv = new CdnInvalidator([{ id: "E1", location: undefined }], cdn.api, d, { firstPauseMs: 1 });
  for (let g = 1; g <= 16; g++) {
    inv.notify(gen(g, [`d${g}/a*.png`]));
    await inv.flush();
  }
  assert.equal(cdn.made.length, 15);
  assert.ok(cdn.made.every((m) => m.paths.length === 1 && m.paths[0]?.endsWith("/*")));
  assert.ok(d.lines.some((l) => l.level === "error" && l.fields.generation === 16));
});
