/**
 * replicate on a bad day: random network faults between the replicator and both buckets, and
 * SIGKILL at seeded points. Each region's head must always name a complete generation, and every
 * region must equal the master once the faults stop.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { checkBucketEqualsTree, checkHeadComplete, count, randomFaults, rng, SEED, sleep, useFigures } from "../helpers/faults.ts";
import { startProxy } from "../helpers/proxy.ts";
import { editSite, writeSite } from "../helpers/site.ts";
import { serverLabel } from "../helpers/s3-server.ts";

const ctx = useServer();
const fig = useFigures("faults-replicate");
const server = serverLabel();

async function setup(tag: string) {
  const [primary, ra, rb] = await Promise.all([
    ctx.server.bucket(`${tag}-p`, { versioning: true }),
    ctx.server.bucket(`${tag}-a`, { versioning: true }),
    ctx.server.bucket(`${tag}-b`),
  ]);
  const proxy = await startProxy(ctx.server.endpoint);
  const master = ctx.tmp("master");
  const mstate = ctx.tmp("mstate");
  const rstate = ctx.tmp("rstate");
  const args = ["replicate", `s3://${primary}/site`, `s3://${ra}/site`, `s3://${rb}/site`, "--endpoint-url", proxy.url, "--state-dir", rstate, "--log-format", "json", "--concurrency", "4"];
  // Region a is versioned where the server can (readers use VersionIds: always complete); region b
  // never is (a killed round may leave "moved" objects that If-Match refuses: the documented limit).
  const versioned = new Set(ctx.server.features.versioning ? [ra] : []);
  return {
    primary, regions: [ra, rb], versioned, proxy, master, args,
    push: async () => expectCode(await ctx.cli(["push", master, `s3://${primary}/site`, ...ctx.flags(mstate)]), 0),
    replicate: () => ctx.cli(args),
  };
}

/** With faults off, one clean replicate run must bring every region to the master's tree exactly. */
async function convergeRegions(s: Awaited<ReturnType<typeof setup>>): Promise<void> {
  expectCode(await s.replicate(), 0);
  for (const b of s.regions) {
    const eq = await checkBucketEqualsTree(ctx.server.client, b, "site/", s.master);
    fig.verified(eq);
    assert.deepEqual(eq.problems, [], `region ${b}`);
  }
}

describe(`replicate faults (${server}, seed ${SEED})`, () => {
  test("replicate under random faults: every regional head stays complete; regions converge once faults stop", async () => {
    const s = await setup("rnet");
    const r = rng(SEED + 31);
    try {
      await writeSite(s.master, r, 14);
      for (let i = 0; i < count(5, 40); i++) {
        if (i > 0) await editSite(s.master, r);
        await s.push();
        s.proxy.fault = randomFaults(r, 0.3);
        const res = await s.replicate();
        assert.ok([0, 4, 7].includes(res.code ?? -1), `replicate under faults exited ${res.code}:\n${res.stderr}`);
        s.proxy.fault = () => ({ kind: "none" });
        for (const b of s.regions) {
          const h = await checkHeadComplete(ctx.server.client, b, "site/", { strict: res.code === 0 || s.versioned.has(b) });
          fig.verified(h);
        }
      }
      fig.faults += s.proxy.injected;
      await convergeRegions(s);
    } finally {
      await s.proxy.close();
    }
  });

  test("replicate killed at seeded points: regional heads stay complete; the next run converges", async () => {
    const s = await setup("rkill");
    const r = rng(SEED + 37);
    try {
      await writeSite(s.master, r, 20);
      // Slow every request a little so a kill lands inside the copy / publish sequence.
      s.proxy.fault = () => ({ kind: "delay", ms: 15 });
      for (let i = 0; i < count(8, 60); i++) {
        await editSite(s.master, r);
        await s.push();
        const child = startCli(s.args);
        await sleep(r.int(150, 1500));
        child.kill("SIGKILL");
        await waitCli(child);
        fig.killPoints++;
        for (const b of s.regions) {
          const h = await checkHeadComplete(ctx.server.client, b, "site/", { strict: s.versioned.has(b) });
          fig.verified(h);
        }
      }
      s.proxy.fault = () => ({ kind: "none" });
      await convergeRegions(s);
    } finally {
      await s.proxy.close();
    }
  });
});
