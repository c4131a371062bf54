/**
 * The daemons' status page in a real browser (Debian's chromium driven by playwright-core): the
 * fleet table and the lag chart render, bucket-supplied text stays text, and a screenshot is taken
 * (kept when FANSYNC_SCREENSHOT names a file: that is how docs/fleet.md's picture is made).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { copyFile } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { chromium } from "playwright-core";
import { startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { putBytes } from "../helpers/s3.ts";
import { writeTree } from "../helpers/tree.ts";
import { serverLabel } from "../helpers/s3-server.ts";

const ctx = useServer();
const kind = serverLabel();
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

describe(`status page in chromium (${kind})`, () => {
  test("fleet table, lag chart and health render; hostile node text is escaped; screenshot", async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (.ci/run does) or set CHROMIUM_PATH`);
    const bucket = await ctx.server.bucket("page");
    const region = await ctx.server.bucket("page-region");
    const master = ctx.tmp("master");
    const mstate = ctx.tmp("mstate");
    await writeTree(master, { "index.html": "<h1>home</h1>", "css/site.css": "body{}" });
    const url = `s3://${bucket}/site/`;
    const regionUrl = `s3://${region}/site/`;
    const push = async () => expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate)]), 0);
    await push();
    expectCode(await ctx.cli(["replicate", url, regionUrl, ...ctx.flags(ctx.tmp("rs"))]), 0);
    // A second node that reports in the region (shown through --fleet), and a node whose report carries markup.
    expectCode(await ctx.cli(["pull", regionUrl, ctx.tmp("jp"), ...ctx.flags(ctx.tmp("jps")), "--report", "--node-id", "tokyo-1"]), 0);
    const now = new Date().toISOString();
    await putBytes(ctx.server.client, bucket, "site/.fansync/nodes/london-1.json", JSON.stringify({
      format: "fansync-node-report/1", node: "london-1", host: "lon", status: "ERROR", generation: 1, headGeneration: 1, lagSeconds: 0,
      source: url, lastSuccess: now, lastError: "RemoteError: <img src=x onerror=alert(1)>", time: now, everyMs: 60_000, version: "x",
    }));
    const d = startCli(
      ["pull", url, ctx.tmp("us"), ...ctx.flags(ctx.tmp("uss")), "--fleet", regionUrl, "--watch", "--interval", "200ms", "--report", "--node-id", "virginia-1", "--http", "127.0.0.1:0"],
      { env: { FANSYNC_SAMPLE_EVERY: "250" } },
    );
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    try {
      let base = "";
      for (let i = 0; i < 100 && !base; i++) {
        const line = d.out.stdout.split("\n").find((l) => l.includes("status page listening"));
        if (line) base = (JSON.parse(line) as { url: string }).url;
        else await delay(100);
      }
      assert.ok(base, `no status page URL:\n${d.out.stdout}\n${d.out.stderr}`);
      // Two new generations the region has not seen: tokyo-1 falls behind while virginia-1 follows.
      for (const v of ["v2", "v3"]) {
        await writeTree(master, { "index.html": `<h1>${v}</h1>` });
        await push();
        await delay(600);
      }
      await delay(1500);
      const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      page.on("dialog", (dlg) => {
        errors.push(`dialog: ${dlg.message()}`);
        void dlg.dismiss();
      });
      const res = await page.goto(base, { waitUntil: "load" });
      assert.equal(res?.status(), 200);
      assert.match(await page.title(), /^fansync pull · (OK|STALE) · /);
      const rows = await page.locator("#fleet tbody tr").allInnerTexts();
      const row = (n: string) => rows.find((r) => r.startsWith(n)) ?? "";
      assert.equal(rows.length, 3, rows.join("\n"));
      assert.match(row("virginia-1"), /^virginia-1\s+OK\s+3\s+0\b/);
      assert.match(row("tokyo-1"), /^tokyo-1\s+OK\s+1\s+2\b/, "tokyo-1 is two generations behind");
      assert.match(row("london-1"), /ERROR/);
      // The hostile error text is shown as text, not turned into an element.
      assert.equal(await page.locator("#fleet img").count(), 0);
      assert.match(row("london-1"), /<img src=x onerror=alert\(1\)>/);
      const lines = await page.locator("#lag-chart polyline").count();
      assert.ok(lines >= 2, `one line per node with at least two samples, got ${lines}`);
      assert.match(await page.locator("#self").innerText(), /generation\s+3/);
      const locs = await page.locator("#locations tbody tr").allInnerTexts();
      assert.equal(locs.length, 2);
      const shot = path.join(ctx.tmp("shot"), "status-page.png");
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok(existsSync(shot));
      if (process.env.FANSYNC_SCREENSHOT) await copyFile(shot, process.env.FANSYNC_SCREENSHOT);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      d.kill("SIGTERM");
      await waitCli(d, 30_000);
    }
  });
});
