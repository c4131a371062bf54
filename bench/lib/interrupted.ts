// Interrupted work (issue 27): a push killed (SIGKILL) once half its content PUTs were answered,
// then run again; a pull killed once half its content GETs were answered, then run again. Each
// rerun's content bytes and requests are counted by the proxy and compared with the remainder (what
// the killed run had not yet transferred). The goal: the rerun sends at most 10% more than that.
//
// Run alone:   node bench/lib/interrupted.ts [files]      (prints the rows as JSON)
// From run.ts: `await runInterrupted({ repo, workDir, serverKind, bucket, prefix, seed, files, env, logPath, log })`.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, rmSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startCountingProxy, type ProxiedRequest } from "./counting-proxy.ts";
import { freshRunDirs, type PropagationOptions } from "./propagation.ts";
import { startS3Server } from "./server.ts";
import { planTree, writeTree, type TreeSpec } from "./tree.ts";
import { compareListing, readTreeSizes } from "./verify.ts";

/** One direction's figures. */
export type InterruptedRow = {
  /** Content objects the killed run had transferred (answered) before it died, of `files`. */
  doneBefore: number;
  /** Content objects and bytes the killed run had not transferred: what a perfect rerun sends. */
  remainder: { objects: number; bytes: number };
  /** What the rerun transferred (content requests answered 200, and their bytes). */
  rerun: { objects: number; bytes: number };
  /** rerun.bytes / remainder.bytes. */
  ratio: number;
  /** The rerun exited 0 and the result holds the whole tree. */
  converged: boolean;
};

/** The bench row: push and pull, each interrupted at half then rerun. */
export type Interrupted = {
  status: "ok" | "failed";
  note?: string;
  files: number;
  push?: InterruptedRow;
  pull?: InterruptedRow;
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    child.once("exit", (code) => resolve(code));
  });
}

/** Runs both halves against a fresh server. Never throws: failures become the status. */
export async function runInterrupted(o: PropagationOptions): Promise<Interrupted> {
  const result: Interrupted = { status: "ok", files: o.files };
  const { master, node } = freshRunDirs(o);
  const spec: TreeSpec = { name: "interrupted", files: o.files, dirs: Math.max(1, Math.round(o.files / 100)), minSize: 1024, maxSize: 20 * 1024, bigFiles: 0, bigMinSize: 0, bigMaxSize: 0, unicode: false };
  const tree = planTree(spec, o.seed);
  writeTree(master, tree, o.seed);
  const sizes = new Map(tree.map((e) => [e.path, e.size]));
  const total = tree.reduce((n, e) => n + e.size, 0);
  const server = await startS3Server(o.serverKind, [o.bucket]);
  // Which content requests the proxy saw answered, for the phase in progress.
  let seen: ProxiedRequest[] = [];
  let onSeen: (() => void) | undefined;
  const proxy = await startCountingProxy(server.endpoint, (r) => {
    seen.push(r);
    onSeen?.();
  });
  const bin = join(o.repo, "bin/fansync.js");
  const url = `s3://${o.bucket}/${o.prefix}`;
  const logStream = createWriteStream(o.logPath, { flags: "a" });
  const contentPath = (u: string): string | undefined => {
    const base = `/${o.bucket}/${o.prefix}/`;
    if (!u.startsWith(base) || u.includes("/.fansync/")) return undefined;
    const p = decodeURIComponent((u.slice(base.length).split("?")[0]) as string);
    return sizes.has(p) ? p : undefined;
  };
  const content = (method: string) => seen.filter((r) => r.method === method && r.status === 200 && contentPath(r.url) !== undefined);
  const bytesOf = (rs: readonly ProxiedRequest[]) => rs.reduce((n, r) => n + (sizes.get(contentPath(r.url) as string) ?? 0), 0);
  const run = (args: string[], state: string): ChildProcess => {
    const child = spawn(bin, [...args, "--endpoint-url", proxy.endpoint, "--state-dir", join(o.workDir, state), "--log-format", "json"], { env: o.env, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.pipe(logStream, { end: false });
    child.stderr?.pipe(logStream, { end: false });
    return child;
  };
  // Start `args`, kill it (SIGKILL) once half the content requests of `method` were answered; then
  // run it again to the end and count.
  const halfThenRerun = async (args: string[], state: string, method: string, holds: () => boolean): Promise<InterruptedRow> => {
    seen = [];
    const child = run(args, state);
    await new Promise<void>((resolve) => {
      onSeen = () => {
        if (content(method).length >= o.files / 2) resolve();
      };
      void exited(child).then(() => resolve());
    });
    onSeen = undefined;
    child.kill("SIGKILL");
    await exited(child);
    await sleep(200);
    const before = content(method);
    const doneBefore = new Set(before.map((r) => contentPath(r.url))).size;
    const remainder = { objects: o.files - doneBefore, bytes: total - bytesOf([...new Map(before.map((r) => [contentPath(r.url), r])).values()]) };
    seen = [];
    const code = await exited(run(args, state));
    const again = content(method);
    const rerun = { objects: again.length, bytes: bytesOf(again) };
    return { doneBefore, remainder, rerun, ratio: remainder.bytes > 0 ? rerun.bytes / remainder.bytes : 0, converged: code === 0 && holds() };
  };
  const holdsTree = (root: string) => () => {
    const c = compareListing(tree, readTreeSizes(root));
    return c.present === c.expected;
  };
  try {
    result.push = await halfThenRerun(["push", master, url, "--concurrency", "16"], "push-state", "PUT", () => true);
    o.log(`interrupted push: rerun sent ${result.push.rerun.bytes} bytes, remainder ${result.push.remainder.bytes} (${result.push.ratio.toFixed(3)}×)`);
    result.pull = await halfThenRerun(["pull", url, node, "--concurrency", "16"], "pull-state", "GET", holdsTree(node));
    o.log(`interrupted pull: rerun fetched ${result.pull.rerun.bytes} bytes, remainder ${result.pull.remainder.bytes} (${result.pull.ratio.toFixed(3)}×)`);
    if (!result.push.converged || !result.pull.converged) throw new Error("a rerun did not converge");
  } catch (err) {
    result.status = "failed";
    result.note = err instanceof Error ? err.message : String(err);
    o.log(`interrupted runs failed: ${result.note}`);
  } finally {
    onSeen = undefined;
    await proxy.close();
    await server.stop();
    logStream.end();
    rmSync(o.workDir, { recursive: true, force: true });
  }
  return result;
}

// Run alone: the rows, printed.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const work = join(os.tmpdir(), `fansync-interrupted-bench-${process.pid}`);
  const env = { ...process.env, AWS_ACCESS_KEY_ID: "bench", AWS_SECRET_ACCESS_KEY: "bench", AWS_REGION: "us-east-1" } as Record<string, string>;
  const r = await runInterrupted({ repo, workDir: work, serverKind: (process.env.BENCH_SERVER as "moto" | "fauxqs" | undefined) ?? "fauxqs", bucket: "interrupted-bench", prefix: "site", seed: 1, files: Number(process.argv[2] ?? "1000"), env, logPath: join(work + "-log", "interrupted.log"), log: (m) => process.stderr.write(m + "\n") });
  process.stdout.write(JSON.stringify(r) + "\n");
  process.exit(r.status === "ok" ? 0 : 1);
}
