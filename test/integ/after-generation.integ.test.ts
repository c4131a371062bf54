/**
 * After each generation (issue 24): the CloudFront invalidation names exactly the generation's
 * changed and deleted paths (checked with ListInvalidations on moto's CloudFront), and the
 * --on-publish / --on-apply hooks run once per generation with the right NDJSON.
 */
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { test, type TestContext } from "node:test";
import { CloudFrontClient, CreateDistributionCommand, GetInvalidationCommand, ListInvalidationsCommand } from "@aws-sdk/client-cloudfront";
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
