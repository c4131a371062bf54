/**
 * Crashes: push and pull killed with SIGKILL at seeded random points (a proxy delay widens the
 * windows), and at the two points that matter most for the uploader: after the objects but before
 * the head, and after the head but before the deletions. After every kill: the node never showed
 * a partial or mixed file under a final name, the head names a complete generation, and the next
 * run converges to the exact tree with nothing left behind.
 */
import assert from "node:assert/strict";
import { readdir, rm } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import {
  checkBucketEqualsTree, checkDocrootEqualsTree, checkHeadComplete, count, Generations, proxiedSite, rng, sampleDocroot, SEED, sleep, useFigures,
} from "../helpers/faults.ts";
import { editSite, writeSite } from "../helpers/site.ts";
import { serverLabel } from "../helpers/s3-server.ts";

const ctx = useServer();
const fig = useFigures("faults-crash");
const server = serverLabel();

async function setup(tag: string) {
  const site = await proxiedSite(ctx, tag);
  const { url, via } = site;
  return {
    ...site,
    startPush: () => startCli(["push", site.master, url, ...via(site.mstate)]),
    startPull: () => startCli(["pull", url, site.node, ...via(site.nstate)]),
    push: () => ctx.cli(["push", site.master, url, ...ctx.flags(site.mstate)]),
    pull: () => ctx.cli(["pull", url, site.node, ...ctx.flags(site.nstate)]),
  };
}

/** Run `start`, SIGKILL it after `ms` (unless it finished first); returns whether the kill landed. */
async function killAfter(child: ReturnType<typeof startCli>, ms: number): Promise<boolean> {
  await Promise.race([sleep(ms), new Promise((r) => child.once("exit", r))]);
  const landed = child.exitCode === null && child.signalCode === null;
  if (landed) child.kill("SIGKILL");
  const res = await waitCli(child);
  if (!landed && res.code !== 0) throw new Error(`run exited ${res.code} before the kill:\n${res.stderr}`);
  return landed;
}

async function noTempFiles(root: string): Promise<void> {
  const names = (await readdir(root, { recursive: true })).filter((n) => n.includes(".fansync-tmp-"));
  assert.deepEqual(names, [], "stale temp files are cleaned by the next run");
}

/**
 * Run a push whose `stalled` request hangs, SIGKILL it there, then check that the head names a
 * complete generation and that the next push brings the bucket to the tree exactly.
 */
async function killPushWhileStalled(s: Awaited<ReturnType<typeof setup>>, stalled: (q: { method: string; url: string }) => boolean, strictHead: boolean, message?: string): Promise<void> {
  s.proxy.reset();
  s.proxy.fault = (q) => (stalled(q) ? { kind: "stall" } : { kind: "none" });
  const child = s.startPush();
  await s.proxy.waitFor(stalled);
  child.kill("SIGKILL");
  await waitCli(child);
  s.proxy.fault = () => ({ kind: "none" });
  const h = await checkHeadComplete(ctx.server.client, s.bucket, "site/", { strict: strictHead });
  fig.verified(h);
  expectCode(await s.push(), 0);
  const eq = await checkBucketEqualsTree(ctx.server.client, s.bucket, "site/", s.master);
  assert.deepEqual(eq.problems, [], message);
  fig.verified(eq);
  fig.killPoints++;
}

describe(`crashes (${server}, seed ${SEED})`, () => {
  test("push killed at seeded random points: the head stays complete, the next push converges", async () => {
    const s = await setup("crash-push");
    const r = rng(SEED + 11);
    try {
      await writeSite(s.master, r, 14);
      expectCode(await s.push(), 0);
      // Every request waits a little, so the run spends its time in its interesting phases.
      s.proxy.fault = () => ({ kind: "delay", ms: 15 });
      await editSite(s.master, r);
      const t0 = Date.now();
      expectCode(await waitCli(s.startPush()), 0);
      const span = Date.now() - t0;
      let landed = 0;
      for (let i = 0; i < count(16, 150); i++) {
        await editSite(s.master, r);
        const at = r.int(0, span);
        if (await killAfter(s.startPush(), at)) landed++;
        const h = await checkHeadComplete(ctx.server.client, s.bucket, "site/", { strict: ctx.server.features.versioning });
        fig.verified(h);
        expectCode(await s.push(), 0);
        const eq = await checkBucketEqualsTree(ctx.server.client, s.bucket, "site/", s.master);
        assert.deepEqual(eq.problems, [], `after a kill at ${at} ms (point ${i})`);
        fig.verified(eq);
        fig.killPoints++;
      }
      fig.faults += s.proxy.injected;
      assert.ok(landed >= 1, "at least one kill landed mid-run");
    } finally {
      await s.proxy.close();
    }
  });

  test("pull killed at seeded random points: never a partial or mixed file under a final name; the next pull converges", async () => {
    const s = await setup("crash-pull");
    const r = rng(SEED + 12);
    const gens = new Generations();
    try {
      await writeSite(s.master, r, 14, 64 * 1024);
      await gens.add(s.master);
      expectCode(await s.push(), 0);
      s.proxy.fault = (q) => (q.method === "GET" ? { kind: "delay", ms: 15 } : { kind: "none" });
      const t0 = Date.now();
      expectCode(await waitCli(s.startPull()), 0);
      const span = Date.now() - t0;
      for (let i = 0; i < count(16, 150); i++) {
        await editSite(s.master, r, 64 * 1024);
        await gens.add(s.master);
        expectCode(await s.push(), 0);
        const stop = sampleDocroot(s.node, gens, () => false);
        const at = r.int(0, span);
        await killAfter(s.startPull(), at);
        const seen = await stop();
        assert.deepEqual(seen.violations, [], `kill at ${at} ms (point ${i})`);
        expectCode(await s.pull(), 0);
        const eq = await checkDocrootEqualsTree(s.node, s.master);
        assert.deepEqual(eq.problems, [], `after a kill at ${at} ms (point ${i})`);
        await noTempFiles(s.node);
        fig.verified(eq);
        fig.killPoints++;
      }
      fig.faults += s.proxy.injected;
    } finally {
      await s.proxy.close();
    }
  });

  test("push killed between the objects and the head: the old head stays complete; the next push converges", async () => {
    const s = await setup("crash-before-head");
    const r = rng(SEED + 13);
    try {
      await writeSite(s.master, r, 10);
      expectCode(await s.push(), 0);
      for (let i = 0; i < count(2, 10); i++) {
        await editSite(s.master, r);
        await killPushWhileStalled(s, (q) => q.method === "PUT" && q.url.includes("head.json"), ctx.server.features.versioning);
      }
      fig.faults += s.proxy.injected;
    } finally {
      await s.proxy.close();
    }
  });

  test("push killed between the head and the deletions: the new head is complete; the next push removes what was left", async () => {
    const s = await setup("crash-before-delete");
    const r = rng(SEED + 14);
    try {
      await writeSite(s.master, r, 10);
      expectCode(await s.push(), 0);
      for (let i = 0; i < count(2, 10); i++) {
        await editSite(s.master, r);
        // editSite may not delete: make sure this generation has a deletion to interrupt.
        const names = (await readdir(s.master, { recursive: true, withFileTypes: true })).filter((d) => d.isFile());
        const victim = names[r.int(0, names.length - 1)];
        if (victim) await rm(path.join(victim.parentPath, victim.name));
        // The deletion of content objects is the first DeleteObjects after the head PUT (the
        // capability probe also deletes, before).
        let headSeen = false;
        const contentDelete = (q: { method: string; url: string }) => {
          if (q.method === "PUT" && q.url.includes("head.json")) headSeen = true;
          return headSeen && q.method === "POST" && q.url.includes("delete");
        };
        await killPushWhileStalled(s, contentDelete, true, "no object of a deleted file is left behind");
      }
      fig.faults += s.proxy.injected;
    } finally {
      await s.proxy.close();
    }
  });
});

