// Packs (issue 14): first-pull time and requests of a fresh node with and without pack objects,
// rclone copy for comparison, and what packs cost the bucket owner (bytes stored, PUTs per
// generation). Small and local on purpose: one tree (default 10k files of 1–20 KiB), fauxqs in a
// child process, every tool behind the same counting proxy.
//   node bench/packs.ts            BENCH_PACKS_FILES=10000 BENCH_PACKS_RUNS=3
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { diffCounts, startCountingProxy, totalRequests, type ProxyCounts } from "./lib/counting-proxy.ts";
import { baseEnv } from "./lib/peers.ts";
import { startS3Server } from "./lib/server.ts";
import { planTree, writeTree, writeTreeFile, type TreeSpec } from "./lib/tree.ts";

const repo = fileURLToPath(new URL("..", import.meta.url));
const files = Number(process.env.BENCH_PACKS_FILES ?? 10_000);
const runs = Number(process.env.BENCH_PACKS_RUNS ?? 3);
const spec: TreeSpec = { name: `${files / 1000}k`, files, dirs: Math.max(10, Math.round(files / 100)), minSize: 1024, maxSize: 20 * 1024, bigFiles: 0, bigMinSize: 0, bigMaxSize: 0, unicode: false };
const scratch = mkdtempSync(join(tmpdir(), "fansync-bench-packs-"));
const env = baseEnv();

/** Run a command to completion; its wall time in ms (throws on a non-zero exit). */
async function timed(cmd: string, args: string[], extraEnv: Record<string, string> = {}): Promise<number> {
  const t0 = performance.now();
  const child = spawn(cmd, args, { env: { ...env, ...extraEnv }, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.once("close", r));
  if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${code}: ${err.slice(-2000)}`);
  return performance.now() - t0;
}

const server = await startS3Server("fauxqs", ["plain", "packed"]);
const proxy = await startCountingProxy(server.endpoint);
const client = new S3Client({ endpoint: server.endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: "bench", secretAccessKey: "benchsecret" } });
const fansync = (...args: string[]) => timed(process.execPath, [join(repo, "bin/fansync.js"), ...args, "--endpoint-url", proxy.endpoint, "--log-format", "json", "--no-progress"]);
/** Time and requests of one step. */
async function step(fn: () => Promise<number>): Promise<{ ms: number; counts: ProxyCounts }> {
  const before = proxy.snapshot();
  const ms = await fn();
  return { ms, counts: diffCounts(proxy.snapshot(), before) };
}
const fmt = (c: ProxyCounts) => `${totalRequests(c)} (${Object.entries(c.requests).map(([k, v]) => `${v} ${k}`).join(", ")})`;
async function bytesUnder(bucket: string, prefix: string): Promise<{ objects: number; bytes: number }> {
  let token: string | undefined;
  let objects = 0;
  let bytes = 0;
  do {
    const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of r.Contents ?? []) {
      objects++;
      bytes += o.Size ?? 0;
    }
    token = r.NextContinuationToken;
  } while (token);
  return { objects, bytes };
}

try {
  const master = join(scratch, "master");
  const entries = planTree(spec, 1);
  writeTree(master, entries, 1);
  const siteBytes = entries.reduce((n, e) => n + e.size, 0);
  console.log(`tree: ${entries.length} files, ${(siteBytes / 2 ** 20).toFixed(1)} MiB; fauxqs, ${runs} runs each, concurrency 16`);
  const pushPlain = await step(() => fansync("push", master, "s3://plain/site/", "--state-dir", join(scratch, "ps")));
  const pushPacked = await step(() => fansync("push", master, "s3://packed/site/", "--state-dir", join(scratch, "pp"), "--packs"));
  console.log(`push (first): plain ${(pushPlain.ms / 1000).toFixed(1)} s, ${fmt(pushPlain.counts)}; --packs ${(pushPacked.ms / 1000).toFixed(1)} s, ${fmt(pushPacked.counts)}`);
  const packs = await bytesUnder("packed", "site/.fansync/packs/");
  const content = await bytesUnder("plain", "site/");
  console.log(`storage: path-keyed + control ${(content.bytes / 2 ** 20).toFixed(1)} MiB in ${content.objects} objects; packs + index add ${(packs.bytes / 2 ** 20).toFixed(1)} MiB in ${packs.objects} objects (+${((100 * packs.bytes) / content.bytes).toFixed(0)}%)`);

  type Run = { ms: number; counts: ProxyCounts };
  const results: { plain: Run[]; packed: Run[]; rclone: Run[] } = { plain: [], packed: [], rclone: [] };
  for (let i = 0; i < runs; i++) {
    for (const kind of ["plain", "packed", "rclone"] as const) {
      const node = join(scratch, `node-${kind}-${i}`);
      if (kind === "rclone") {
        const conf = join(scratch, "rclone.conf");
        results.rclone.push(await step(() => timed("/usr/bin/rclone", ["copy", "bench:plain/site", node, "--no-unicode-normalization", "--transfers", "16", "--checkers", "16", "--exclude", ".fansync/**"], {
          RCLONE_CONFIG: conf, RCLONE_CONFIG_BENCH_TYPE: "s3", RCLONE_CONFIG_BENCH_PROVIDER: "Other", RCLONE_CONFIG_BENCH_ENV_AUTH: "false",
          RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: "bench", RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: "benchsecret", RCLONE_CONFIG_BENCH_ENDPOINT: proxy.endpoint,
          RCLONE_CONFIG_BENCH_REGION: "us-east-1", RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: "true",
        })));
      } else {
        results[kind].push(await step(() => fansync("pull", `s3://${kind}/site/`, node, "--state-dir", join(scratch, `ns-${kind}-${i}`))));
      }
      rmSync(node, { recursive: true, force: true });
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  console.log("\n| first pull of a fresh node | median time | range | requests |");
  console.log("|---|---|---|---|");
  for (const [label, kind] of [["fansync pull, path-keyed", "plain"], ["fansync pull, packs", "packed"], ["rclone copy 1.60", "rclone"]] as const) {
    const rs = results[kind];
    const ts = rs.map((r) => r.ms / 1000);
    console.log(`| ${label} | ${median(ts).toFixed(2)} s | ${Math.min(...ts).toFixed(2)}–${Math.max(...ts).toFixed(2)} s | ${fmt(rs[0]!.counts)} |`);
  }

  // What later generations cost: a small change (no pack work), then a change big enough to cut a new pack.
  const change = async (n: number, version: number) => {
    for (const e of entries.slice(0, n)) writeTreeFile(master, e, 1, version, new Date(Date.now() - 60_000));
    const plain = await step(() => fansync("push", master, "s3://plain/site/", "--state-dir", join(scratch, "ps")));
    const packed = await step(() => fansync("push", master, "s3://packed/site/", "--state-dir", join(scratch, "pp"), "--packs"));
    console.log(`push after ${n} changed files: plain ${fmt(plain.counts)}; --packs ${fmt(packed.counts)}`);
  };
  console.log("");
  await change(50, 1);
  await change(1500, 2);
  const after = await bytesUnder("packed", "site/.fansync/packs/");
  console.log(`packs after those generations: ${(after.bytes / 2 ** 20).toFixed(1)} MiB in ${after.objects} objects`);
} finally {
  client.destroy();
  await proxy.close();
  await server.stop();
  rmSync(scratch, { recursive: true, force: true });
}
