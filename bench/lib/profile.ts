// One fansync push and/or pull against a fresh fauxqs child, measured for what a busy machine
// distorts least: CPU seconds (user + sys) and peak RSS from GNU time, and optionally a V8 CPU
// profile (`--cpu-prof`). No proxy and no peers: this is for profiling fansync itself (issue 25),
// not for the paired comparison that bench/run.ts makes.
//
//   node bench/lib/profile.ts [--files 10000] [--sparse] [--steps push,pull,noop-push]
//                             [--cpu-prof DIR] [--concurrency 16] [--work /tmp/fansync-profile]
//                             [--node-flag=--trace-gc ...] [--repo OTHER_CHECKOUT]
//                             [--arg=--threads=0 ...] [--wrap "strace -c -f -o FILE"]
//
// The tree is bench/run.ts's (same generator, seed 42, site or sparse shape) and kept under
// --work between invocations, recognised by its listing digest. Each step prints one line:
//   push 10k: 5.21 s wall, 3.90 s CPU (3.10 user + 0.80 sys), peak RSS 180.2 MiB, exit 0
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startS3Server } from "./server.ts";
import { baseEnv } from "./peers.ts";
import { listingDigest, planTree, writeTree, type TreeSpec } from "./tree.ts";

const { values } = parseArgs({
  options: {
    files: { type: "string", default: "10000" },
    sparse: { type: "boolean", default: false },
    steps: { type: "string", default: "push,pull" },
    "cpu-prof": { type: "string" },
    concurrency: { type: "string", default: "16" },
    work: { type: "string", default: "/tmp/fansync-profile" },
    "node-flag": { type: "string", multiple: true, default: [] },
    repo: { type: "string" },
    wrap: { type: "string" },
    arg: { type: "string", multiple: true, default: [] },
  },
});

// --repo: another checkout's build (its bin/ and dist/), to compare two builds on the same tree.
const repo = resolve(values.repo ?? fileURLToPath(new URL("../..", import.meta.url)));
const files = Number(values.files);
const label = files >= 1_000_000 ? `${files / 1_000_000}M` : files >= 1000 ? `${files / 1000}k` : String(files);
const KB = 1024;
// The same shapes as bench/run.ts's `site` and `sparse` trees.
const spec: TreeSpec = {
  name: values.sparse ? `${label}-sparse` : label,
  files,
  dirs: values.sparse ? Math.round(files / 100) : Math.max(10, Math.round(files / 100)),
  minSize: values.sparse ? 16 : KB,
  maxSize: values.sparse ? 512 : 20 * KB,
  bigFiles: 0,
  bigMinSize: 0,
  bigMaxSize: 0,
  unicode: true,
};
const seed = 42;
const work = resolve(values.work);
const root = join(work, `tree-${spec.name}`);
const entries = planTree(spec, seed);
const digest = listingDigest(entries);
const marker = join(work, `tree-${spec.name}.digest`);
if (!existsSync(marker) || readFileSync(marker, "utf8") !== digest) {
  process.stdout.write(`writing the ${spec.name} tree under ${root} ...\n`);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  writeTree(root, entries, seed);
  writeFileSync(marker, digest);
}

const runDir = join(work, "run");
// The last run's files are moved aside, never deleted here: on an ext4 without a journal (this
// machine's disk) a file created within 1 to 6 minutes of a mass deletion costs the kernel a scan
// of the freed inodes (ext4's recently_deleted: perf put a quarter of a 10k pull's samples there),
// which would be the profiler's doing, not fansync's. Delete --work/trash by hand when done.
const trash = join(work, "trash");
if (existsSync(runDir)) {
  mkdirSync(trash, { recursive: true });
  renameSync(runDir, join(trash, String(Date.now())));
  process.stdout.write(`the last run's files are under ${trash}: delete them when done, not right before a run\n`);
}
const nodeDir = join(runDir, "node");
mkdirSync(nodeDir, { recursive: true });
const bucket = "profile";
const server = await startS3Server("fauxqs", [bucket]);

/** Runs one CLI invocation under GNU time and prints its figures. */
async function step(name: string, args: string[]): Promise<void> {
  // The launcher's own Node flags (its shebang line), as operators run it, then --node-flag's.
  const shebang = readFileSync(join(repo, "bin/fansync.js"), "utf8").split("\n")[0] ?? "";
  const node = [process.execPath, ...shebang.split(" ").filter((a) => a.startsWith("--")), ...(values["node-flag"] ?? [])];
  if (values["cpu-prof"] !== undefined) {
    mkdirSync(values["cpu-prof"], { recursive: true });
    node.push("--cpu-prof", `--cpu-prof-dir=${resolve(values["cpu-prof"])}`, `--cpu-prof-name=${name}-${spec.name}.cpuprofile`);
  }
  const common = ["--endpoint-url", server.endpoint, "--concurrency", String(values.concurrency), "--log-level", "warn", ...(values.arg ?? [])];
  // --wrap: a command the CLI runs under (`strace -c -f -o FILE`, `perf record -g -o FILE --`).
  const wrap = values.wrap ? values.wrap.split(" ").filter((a) => a !== "") : [];
  const argv = ["-f", "%e %U %S %M", ...wrap, ...node, join(repo, "bin/fansync.js"), ...args, ...common];
  const child = spawn("/usr/bin/time", argv, { env: baseEnv(), stdio: ["ignore", "inherit", "pipe"] });
  let err = "";
  child.stderr.on("data", (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((res) => child.on("exit", (c) => res(c)));
  const last = err.trim().split("\n").at(-1) ?? "";
  const [wall, user, sys, rss] = last.split(" ").map(Number) as [number, number, number, number];
  if (code !== 0) process.stdout.write(err.split("\n").slice(-8).join("\n") + "\n");
  process.stdout.write(
    `${name} ${spec.name}: ${wall.toFixed(2)} s wall, ${(user + sys).toFixed(2)} s CPU (${user.toFixed(2)} user + ${sys.toFixed(2)} sys), ` +
      `peak RSS ${(rss / 1024).toFixed(1)} MiB, exit ${code}\n`,
  );
}

try {
  const url = `s3://${bucket}/site/`;
  for (const s of values.steps.split(",")) {
    if (s === "push" || s === "noop-push") await step(s, ["push", root, url, "--state-dir", join(runDir, "push-state")]);
    else if (s === "pull" || s === "noop-pull") await step(s, ["pull", url, nodeDir, "--state-dir", join(runDir, "pull-state")]);
    else throw new Error(`unknown step ${s} (push, noop-push, pull, noop-pull)`);
  }
} finally {
  await server.stop();
}
