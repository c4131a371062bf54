/**
 * Network faults between fansync and the S3 server, injected by the proxy: latency, 500 and 503
 * SlowDown, connections reset mid-body, bodies truncated under a correct Content-Length, stalls.
 * push, watch and pull must converge to the exact tree once the faults stop, never publish a head
 * whose objects are not all there, and never leave a truncated file on a node.
 * (replicate is built on another branch and is not covered here yet.)
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import {
  checkBucketEqualsTree, checkDocrootEqualsTree, checkHeadComplete, count, Generations, proxiedSite, randomFaults, rng, sampleDocroot, SEED, sleep, SOAK, useFigures,
} from "../helpers/faults.ts";
import type { Fault } from "../helpers/proxy.ts";
import { editSite, writeSite } from "../helpers/site.ts";
import { serverLabel } from "../helpers/s3-server.ts";

const ctx = useServer();
const fig = useFigures("faults-network");
const server = serverLabel();

async function setup(tag: string) {
  const site = await proxiedSite(ctx, tag);
  const { url, via } = site;
  return {
    ...site,
    push: (...extra: string[]) => ctx.cli(["push", site.master, url, ...via(site.mstate), ...extra]),
    pull: (...extra: string[]) => ctx.cli(["pull", url, site.node, ...via(site.nstate), ...extra]),
    cleanPush: (...extra: string[]) => ctx.cli(["push", site.master, url, ...ctx.flags(site.mstate), ...extra]),
  };
}

describe(`network faults (${server}, seed ${SEED})`, () => {
  test("push under random faults: every head stays complete; the bucket converges once faults stop", async () => {
    const s = await setup("net-push");
    const r = rng(SEED + 1);
    try {
      await writeSite(s.master, r, 16);
      const rounds = count(6, 60);
      for (let i = 0; i < rounds; i++) {
        if (i > 0) await editSite(s.master, r);
        s.proxy.fault = randomFaults(r, 0.3);
        const res = await s.push();
        assert.ok([0, 4, 7].includes(res.code ?? -1), `push under faults exited ${res.code}:\n${res.stderr}`);
        // Whatever the outcome, the head names objects that are all there with the right bytes.
        s.proxy.fault = () => ({ kind: "none" });
        const h = await checkHeadComplete(ctx.server.client, s.bucket, "site/", { strict: res.code === 0 || ctx.server.features.versioning });
        fig.verified(h);
      }
      fig.faults += s.proxy.injected;
      expectCode(await s.push(), 0);
      const eq = await checkBucketEqualsTree(ctx.server.client, s.bucket, "site/", s.master);
      fig.verified(eq);
      assert.deepEqual(eq.problems, []);
    } finally {
      await s.proxy.close();
    }
  });

  test("pull under random faults: no truncated or mixed file ever appears; the node converges", async () => {
    const s = await setup("net-pull");
    const r = rng(SEED + 2);
    const gens = new Generations();
    try {
      await writeSite(s.master, r, 16);
      await gens.add(s.master);
      expectCode(await s.cleanPush(), 0);
      const rounds = count(6, 60);
      for (let i = 0; i < rounds; i++) {
        await editSite(s.master, r);
        await gens.add(s.master);
        expectCode(await s.cleanPush(), 0);
        s.proxy.fault = randomFaults(r, 0.3);
        const stop = sampleDocroot(s.node, gens, () => false);
        const res = await s.pull();
        const seen = await stop();
        assert.deepEqual(seen.violations, [], `pull ${i} exited ${res.code}`);
        assert.ok([0, 4, 7].includes(res.code ?? -1), `pull under faults exited ${res.code}:\n${res.stderr}`);
      }
      fig.faults += s.proxy.injected;
      s.proxy.fault = () => ({ kind: "none" });
      expectCode(await s.pull(), 0);
      const eq = await checkDocrootEqualsTree(s.node, s.master);
      fig.verified(eq);
      assert.deepEqual(eq.problems, []);
    } finally {
      await s.proxy.close();
    }
  });

  test("every fault kind on every request kind, one at a time: push and pull still converge", async () => {
    const s = await setup("net-each");
    const r = rng(SEED + 3);
    const kinds: Fault[] = [
      { kind: "delay", ms: 200 },
      { kind: "status", status: 503, code: "SlowDown" },
      { kind: "status", status: 500, code: "InternalError" },
      { kind: "reset-mid-body" },
      { kind: "truncate" },
    ];
    // Which request the fault hits: content objects, the manifest, the journal, the head (GET or PUT).
    const targets: [string, (q: { method: string; url: string }) => boolean][] = [
      ["content", (q) => !q.url.includes(".fansync")],
      ["manifest", (q) => q.url.includes("/manifests/")],
      ["journal", (q) => q.url.includes("/journal/")],
      ["head GET", (q) => q.url.includes("head.json") && q.method === "GET"],
      ["head PUT", (q) => q.url.includes("head.json") && q.method === "PUT"],
    ];
    const combos = kinds.flatMap((k) => targets.map(([name, t]) => ({ k, name, t })));
    // npm test: a seeded sample plus the two that matter most (a lost answer to the head PUT);
    // the soak runs them all.
    const chosen = SOAK ? combos : [...combos.filter((c) => c.name === "head PUT" && c.k.kind === "reset-mid-body"), ...Array.from({ length: 5 }, () => r.pick(combos))];
    try {
      await writeSite(s.master, r, 8);
      expectCode(await s.cleanPush(), 0);
      expectCode(await s.pull(), 0);
      for (const { k, name, t } of chosen) {
        await editSite(s.master, r);
        // Hit the first two matching requests: the SDK's own retry absorbs one, p-retry the rest.
        let left = 2;
        s.proxy.fault = (q) => (t(q) && left-- > 0 && (k.kind !== "truncate" || q.method === "GET") ? k : { kind: "none" });
        const p = await s.push();
        assert.ok([0, 4, 7].includes(p.code ?? -1), `push with ${k.kind} on ${name}: exit ${p.code}\n${p.stderr}`);
        s.proxy.fault = () => ({ kind: "none" });
        await checkHeadComplete(ctx.server.client, s.bucket, "site/", { strict: p.code === 0 || ctx.server.features.versioning });
        if (p.code !== 0) expectCode(await s.push(), 0);
        left = 2;
        s.proxy.fault = (q) => (t(q) && left-- > 0 && q.method === "GET" ? k : { kind: "none" });
        const g = await s.pull();
        assert.ok([0, 4, 7].includes(g.code ?? -1), `pull with ${k.kind} on ${name}: exit ${g.code}\n${g.stderr}`);
        s.proxy.fault = () => ({ kind: "none" });
        if (g.code !== 0) expectCode(await s.pull(), 0);
        const eq = await checkDocrootEqualsTree(s.node, s.master);
        assert.deepEqual(eq.problems, [], `after ${k.kind} on ${name}`);
        fig.verified(eq);
      }
      fig.faults += s.proxy.injected;
    } finally {
      await s.proxy.close();
    }
  });

  test("watch under random faults converges once the faults stop, and exits 0 on SIGTERM", async () => {
    const s = await setup("net-watch");
    const r = rng(SEED + 4);
    await writeSite(s.master, r, 12);
    s.proxy.fault = randomFaults(r, 0.25);
    const child = startCli(["watch", s.master, s.url, "--endpoint-url", s.proxy.url, "--state-dir", s.mstate, "--log-format", "json", "--delay", "150ms", "--max-delay", "1s"]);
    try {
      for (let i = 0; i < count(4, 30); i++) {
        await editSite(s.master, r);
        await sleep(400);
      }
      s.proxy.fault = () => ({ kind: "none" });
      fig.faults += s.proxy.injected;
      const deadline = Date.now() + 60_000;
      let eq = await checkBucketEqualsTree(ctx.server.client, s.bucket, "site/", s.master).catch((e: unknown) => ({ files: 0, bytesLost: 0, problems: [String(e)] }));
      while (eq.problems.length > 0 && Date.now() < deadline) {
        await sleep(500);
        eq = await checkBucketEqualsTree(ctx.server.client, s.bucket, "site/", s.master).catch((e: unknown) => ({ files: 0, bytesLost: 0, problems: [String(e)] }));
      }
      assert.deepEqual(eq.problems, [], `watch did not converge:\n${child.out.stdout.slice(-2000)}`);
      fig.verified(eq);
      await checkHeadComplete(ctx.server.client, s.bucket, "site/", { strict: true });
    } finally {
      child.kill("SIGTERM");
      await s.proxy.close();
    }
    const res = await waitCli(child, 40_000);
    assert.equal(res.code, 0, res.stderr);
  });

  test("a stalled connection fails over within FANSYNC_REQUEST_TIMEOUT; a dead endpoint exits 7 promptly", async () => {
    const s = await setup("net-stall");
    const r = rng(SEED + 5);
    const env = { FANSYNC_REQUEST_TIMEOUT: "1s" };
    const via = (st: string) => ["--endpoint-url", s.proxy.url, "--state-dir", st, "--log-format", "json"];
    try {
      await writeSite(s.master, r, 6);
      // One stalled content PUT and one stalled head GET: the SDK's retry after the timeout carries on.
      let putStalls = 1;
      let getStalls = 1;
      s.proxy.fault = (q) => (q.method === "PUT" && !q.url.includes(".fansync") && putStalls-- > 0) || (q.method === "GET" && q.url.includes("head.json") && getStalls-- > 0) ? { kind: "stall" } : { kind: "none" };
      let t0 = Date.now();
      expectCode(await ctx.cli(["push", s.master, s.url, ...via(s.mstate)], env), 0);
      assert.ok(Date.now() - t0 < 20_000, `push took ${Date.now() - t0} ms`);
      let gets = 1;
      s.proxy.fault = (q) => (q.method === "GET" && !q.url.includes(".fansync") && gets-- > 0 ? { kind: "stall" } : { kind: "none" });
      t0 = Date.now();
      expectCode(await ctx.cli(["pull", s.url, s.node, ...via(s.nstate)], env), 0);
      assert.ok(Date.now() - t0 < 20_000, `pull took ${Date.now() - t0} ms`);
      assert.deepEqual((await checkDocrootEqualsTree(s.node, s.master)).problems, []);
      // Everything stalls: a clear remote error (exit 7), in seconds rather than minutes.
      await editSite(s.master, r);
      expectCode(await ctx.cli(["push", s.master, s.url, ...ctx.flags(s.mstate)]), 0);
      s.proxy.fault = () => ({ kind: "stall" });
      t0 = Date.now();
      const dead = await ctx.cli(["pull", s.url, s.node, ...via(s.nstate)], env);
      expectCode(dead, 7);
      assert.match(dead.stderr, /cannot reach|Timeout/i);
      assert.ok(Date.now() - t0 < 30_000, `gave up after ${Date.now() - t0} ms`);
      const bad = await ctx.cli(["pull", s.url, s.node, ...via(s.nstate)], { FANSYNC_REQUEST_TIMEOUT: "soon" });
      expectCode(bad, 2);
      fig.faults += s.proxy.injected;
      fig.filesVerified += 6;
    } finally {
      await s.proxy.close();
    }
  });
});
