/**
 * After each generation (issue 24): the CloudFront invalidation names exactly the generation's
 * changed and deleted paths (checked with ListInvalidations on moto's CloudFront), and the
 * --on-publish / --on-apply hooks run once per generation with the right NDJSON.
 */
import assert from "node:assert/strict";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { test, type TestContext } from "node:test";
import { CloudFrontClient, CreateDistributionCommand, GetInvalidationCommand, ListInvalidationsCommand } from "@aws-sdk/client-cloudfront";
import pino from "pino";
import { compileFilter } from "../../src/core/filters.ts";
import { formatLocation, parseLocation } from "../../src/core/location.ts";
import { createS3Client } from "../../src/adapters/s3-client.ts";
import { S3Store } from "../../src/adapters/s3-store.ts";
import { jobStateDir } from "../../src/adapters/state-dir.ts";
import { TwoWayNode } from "../../src/engine/two-way.ts";
import { startCli, waitCli } from "../helpers/cli.ts";
import { nothingToPublish } from "../helpers/sync-nodes.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { writeTree } from "../helpers/tree.ts";

const ctx = useServer();
// CloudFront is served by moto (LocalStack's community edition has none): the CDN tests skip elsewhere, saying so.
let probed: Promise<string | undefined> | undefined;
async function needsCdn(t: TestContext): Promise<boolean> {
  const why = await (probed ??= createDistribution(cloudfront(), "probe").then(() => undefined, (err: unknown) => `${ctx.server.label} serves no CloudFront API (${(err as Error).name})`));
  if (why) t.skip(why);
  return why === undefined;
}

function cloudfront(): CloudFrontClient {
  return new CloudFrontClient({ endpoint: ctx.server.endpoint, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" } });
}

async function createDistribution(cf: CloudFrontClient, bucket: string): Promise<string> {
  const out = await cf.send(new CreateDistributionCommand({
    DistributionConfig: {
      CallerReference: `fansync-test-${bucket}`,
      Comment: "fansync test",
      Enabled: true,
      Origins: { Quantity: 1, Items: [{ Id: "s3", DomainName: `${bucket}.s3.amazonaws.com`, OriginPath: "/www", S3OriginConfig: { OriginAccessIdentity: "" } }] },
      DefaultCacheBehavior: { TargetOriginId: "s3", ViewerProtocolPolicy: "allow-all", MinTTL: 0, ForwardedValues: { QueryString: false, Cookies: { Forward: "none" } }, TrustedSigners: { Enabled: false, Quantity: 0 } },
    },
  }));
  // fauxqs answers any unknown API with a 200 and an empty body: no id means no CloudFront here.
  const id = out.Distribution?.Id;
  if (!id) throw Object.assign(new Error("CreateDistribution answered without a distribution id"), { name: "NoDistributionId" });
  return id;
}

/** Every invalidation of the distribution, oldest first, with its paths sorted. */
async function invalidations(cf: CloudFrontClient, id: string): Promise<{ reference: string; paths: string[] }[]> {
  const list = await cf.send(new ListInvalidationsCommand({ DistributionId: id }));
  const out = await Promise.all((list.InvalidationList?.Items ?? []).map(async (s) => {
    const inv = await cf.send(new GetInvalidationCommand({ DistributionId: id, Id: s.Id as string }));
    return { at: s.CreateTime?.getTime() ?? 0, reference: inv.Invalidation?.InvalidationBatch?.CallerReference ?? "", paths: [...(inv.Invalidation?.InvalidationBatch?.Paths?.Items ?? [])].sort() };
  }));
  return out.sort((a, b) => a.at - b.at || a.reference.localeCompare(b.reference)).map(({ reference, paths }) => ({ reference, paths }));
}

test("push invalidates exactly each generation's changed and deleted paths, and --on-publish gets them as NDJSON once", async (t) => {
  if (!(await needsCdn(t))) return;
  const dir = ctx.tmp("cdn");
  const bucket = await ctx.server.bucket("cdn");
  const cf = cloudfront();
  const dist = await createDistribution(cf, bucket);
  const master = path.join(dir, "master");
  const hookOut = path.join(dir, "hook.ndjson");
  await writeTree(master, { "index.html": "one\n", "css/site.css": "a{}\n", "docs/a b.html": "x\n", "old.js": "1\n" });
  const push = () => ctx.cli(["push", master, `s3://${bucket}/www`, "--cloudfront-distribution", dist, "--on-publish", `cat >> '${hookOut}'`, ...ctx.flags(path.join(dir, "state"))]);
  expectCode(await push(), 0);
  await writeFile(path.join(master, "css/site.css"), "b{}\n");
  await rm(path.join(master, "old.js"));
  expectCode(await push(), 0);
  // Nothing changed: no generation, no invalidation, no hook.
  expectCode(await push(), 0);
  const invs = await invalidations(cf, dist);
  assert.deepEqual(invs.map((i) => i.paths), [
    ["/", "/css/site.css", "/docs/a%20b.html", "/index.html", "/old.js"],
    ["/css/site.css", "/old.js"],
  ]);
  const lines = (await readFile(hookOut, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { generation: number; op: string; path: string });
  // Puts come in the order their uploads finished: compared as sets per generation.
  const key = (l: { generation: number; op: string; path: string }) => `${l.generation} ${l.op} ${l.path}`;
  assert.deepEqual(lines.map(key).sort(), ["1 put css/site.css", "1 put docs/a b.html", "1 put index.html", "1 put old.js", "2 delete old.js", "2 put css/site.css"]);
  assert.deepEqual(lines.map((l) => l.generation), [1, 1, 1, 1, 2, 2], "one run per generation, in order");
});

test("many changes in one generation collapse to directory wildcards", async (t) => {
  if (!(await needsCdn(t))) return;
  const dir = ctx.tmp("cdn-wild");
  const bucket = await ctx.server.bucket("cdn-wild");
  const cf = cloudfront();
  const dist = await createDistribution(cf, bucket);
  const master = path.join(dir, "master");
  const files: Record<string, string> = { "index.html": "i\n" };
  for (let i = 0; i < 120; i++) files[`img/p${i}.txt`] = `${i}\n`;
  await writeTree(master, files);
  expectCode(await ctx.cli(["push", master, `s3://${bucket}/www`, "--cloudfront-distribution", dist, ...ctx.flags(path.join(dir, "state"))]), 0);
  assert.deepEqual((await invalidations(cf, dist)).map((i) => i.paths), [["/", "/img/*", "/index.html"]]);
});

test("pull --on-apply runs once per generation applied with its paths", async () => {
  const dir = ctx.tmp("apply");
  const bucket = await ctx.server.bucket("apply");
  const master = path.join(dir, "master");
  const node = path.join(dir, "node");
  const hookOut = path.join(dir, "hook.ndjson");
  await writeTree(master, { "index.html": "one\n", "a.css": "a\n" });
  const push = async () => expectCode(await ctx.cli(["push", master, `s3://${bucket}/www`, ...ctx.flags(path.join(dir, "state-m"))]), 0);
  const pull = async () => expectCode(await ctx.cli(["pull", `s3://${bucket}/www`, node, "--on-apply", `cat >> '${hookOut}'; echo "gen $FANSYNC_GENERATION" >> '${hookOut}'`, ...ctx.flags(path.join(dir, "state-n"))]), 0);
  await push();
  await pull();
  await pull();
  await writeFile(path.join(master, "index.html"), "two\n");
  await rm(path.join(master, "a.css"));
  await push();
  await pull();
  const text = await readFile(hookOut, "utf8");
  assert.deepEqual(text.trim().split("\n").map((l) => (l.startsWith("{") ? (({ generation, op, path: p }) => `${generation} ${op} ${p}`)(JSON.parse(l) as { generation: number; op: string; path: string }) : l)), [
    "1 put a.css", "1 put index.html", "gen 1",
    "2 put index.html", "2 delete a.css", "gen 2",
  ]);
});

test("sync --on-apply runs for a generation the node adopted while healing a stopped round, once", async () => {
  // A sync node stopped between applying another writer's generation and recording it as its base
  // (sync-apply-kill.integ.test.ts makes that stop land every time: the node runs in this process
  // and aborts when the puller logs "docroot at generation"). The next round adopts the generation
  // the docroot reached instead of applying it: its --on-apply hook must still run for it.
  const dir = ctx.tmp("sync-heal-hook");
  const bucket = await ctx.server.bucket("sync-heal-hook");
  const url = `s3://${bucket}/www`;
  const master = path.join(dir, "master");
  const root = path.join(dir, "node");
  const stateBase = path.join(dir, "state-n");
  const hookOut = path.join(dir, "hook.ndjson");
  const statusFile = path.join(dir, "status.json");
  const push = async () => expectCode(await ctx.cli(["push", master, url, ...ctx.flags(path.join(dir, "state-m"))]), 0);
  // The CLI's own state directory for this node, so the daemon below finds what the stopped round left.
  const state = jobStateDir(stateBase, "sync", { docroot: root, url: formatLocation(parseLocation(url)) });
  const store = new S3Store({ client: createS3Client({ endpointUrl: ctx.server.endpoint, pathStyle: true, profile: undefined, maxSockets: 8 }), bucket, endpoint: ctx.server.endpoint });
  const publisher = nothingToPublish(state, "nothing of this node's is to be published");
  const node = (signal: AbortSignal, log = pino({ level: "silent" })) => new TwoWayNode({
    docroot: root, loc: parseLocation(url), state, conflictsDir: path.join(dir, "conflicts"), filter: compileFilter({ exclude: [], include: [] }), owns: () => true, rule: "newer", nodeId: "n", settleMs: 0,
    puller: { docroot: root, state, concurrency: 4, maxDelete: { kind: "percent", value: 50 }, force: false, dryRun: false, deleteExtraneous: false, verify: false, checksum: false, keep: [], maxJournals: 20, trust: undefined, maxAgeMs: undefined, allowSetuid: false },
  }, { store, publisher, log, signal, now: () => new Date() });

  await mkdir(root);
  await writeTree(master, { "index.html": "one\n", "x.html": "x1\n", "y.html": "y1\n" }, new Date(Date.now() - 7_200_000));
  await push();
  await node(new AbortController().signal).round({ joining: true });
  await writeTree(master, { "x.html": "x2\n" }, new Date(Date.now() - 60_000));
  await rm(path.join(master, "y.html"));
  await push();
  const stop = new AbortController();
  const log = pino({ level: "info" }, { write: (line: string) => (line.includes("docroot at generation") ? stop.abort() : undefined) });
  await assert.rejects(node(stop.signal, log).round({ joining: false }), (e: unknown) => (e as Error).name === "AbortError");
  assert.equal(await readFile(path.join(root, "x.html"), "utf8"), "x2\n", "the apply landed before the stop");

  // The daemon starts on that state: generation 2 is in the docroot but is not its base yet.
  const daemon = async () => {
    await rm(statusFile, { force: true });
    const child = startCli(["sync", root, url, ...ctx.flags(stateBase), "--node-id", "n", "--interval", "10m", "--status-file", statusFile, "--on-apply", `cat >> '${hookOut}'`]);
    try {
      for (let i = 0; ; i++) {
        const st = await readFile(statusFile, "utf8").then((t) => JSON.parse(t) as { status: string; generation: number }, () => undefined);
        if (st?.status === "OK" && st.generation === 2) break;
        if (i > 300) throw new Error(`the sync node never reported generation 2\n${child.out.stdout.slice(-3000)}\n${child.out.stderr.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      child.kill("SIGTERM");
      // SIGTERM drains the hook queue before the daemon exits.
      expectCode(await waitCli(child, 40_000), 0);
    }
  };
  const hookLines = async () => (await readFile(hookOut, "utf8").catch(() => "")).split("\n").filter(Boolean).map((l) => (({ generation, op, path: p }) => `${generation} ${op} ${p}`)(JSON.parse(l) as { generation: number; op: string; path: string }));
  await daemon();
  assert.deepEqual(await hookLines(), ["2 put x.html", "2 delete y.html"], "the hook ran for the healed generation with its paths");
  // A restart finds generation 2 recorded as the base and hooked: the hook never runs twice.
  await daemon();
  assert.deepEqual(await hookLines(), ["2 put x.html", "2 delete y.html"]);
});
