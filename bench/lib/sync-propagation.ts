// Two-way propagation: three `fansync sync` daemons (A, B, C) on one location (moto: sync needs
// conditional writes). Files are written one at a time on A; each is timed from close() on A until
// B and C both serve it complete (size and bytes equal), polling every 5 ms. Also the other way
// (a "user upload" on C reaching A and B), since every node writes.
//
// Run alone:   node bench/lib/sync-propagation.ts [files]      (prints the row as JSON)
// From run.ts: `await runSyncPropagation({ repo, workDir, bucket, prefix, seed, files, env, logPath, log })`
//              and report `syncPropagation` like `propagation` (p50/p95 of samplesMs).
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startCountingProxy, diffCounts } from "./counting-proxy.ts";
import { formatRequests } from "./report.ts";
import { arrived, type PropagationOptions } from "./propagation.ts";
import { startS3Server } from "./server.ts";
import { percentile } from "./stats.ts";
import { contentFor, hash32, planTree, prng, writeTree, type TreeSpec } from "./tree.ts";
import { compareListing, readTreeSizes } from "./verify.ts";

/** What runSyncPropagation needs: what the one-way row needs, on moto whatever the bench's server. */
export type SyncPropagationOptions = Omit<PropagationOptions, "serverKind">;

/** The row: latencies (ms) of a change on one node until both others serve it. */
export type SyncPropagation = {
  status: "ok" | "failed";
  note?: string;
  /** A → B and C, each file: the later of the two arrivals. */
  samplesMs: number[];
  /** C → A and B (a user upload on an app server). */
  reverseMs: number[];
  files: number;
  lost: number;
  p50?: number;
  p95?: number;
  reverseP50?: number;
  reverseP95?: number;
  delayMs: number;
  intervalMs: number;
};

const DELAY_MS = 100;
const INTERVAL_MS = 200;
const PER_FILE_TIMEOUT_MS = 30_000;
const BASE: TreeSpec = { name: "sync-propagation-base", files: 200, dirs: 10, minSize: 1024, maxSize: 20 * 1024, bigFiles: 0, bigMinSize: 0, bigMaxSize: 0, unicode: false };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


/** Runs the three daemons, writes the files, returns the latencies. Never throws: failures become the status. */
export async function runSyncPropagation(o: SyncPropagationOptions): Promise<SyncPropagation> {
  const result: SyncPropagation = { status: "ok", samplesMs: [], reverseMs: [], files: o.files, lost: 0, delayMs: DELAY_MS, intervalMs: INTERVAL_MS };
  rmSync(o.workDir, { recursive: true, force: true });
  const roots = ["a", "b", "c"].map((n) => join(o.workDir, n, "www"));
  for (const r of roots) mkdirSync(r, { recursive: true });
  mkdirSync(dirname(o.logPath), { recursive: true });
  writeFileSync(o.logPath, "");
  const base = planTree(BASE, o.seed);
  writeTree(roots[0] as string, base, o.seed);
  const server = await startS3Server("moto", [o.bucket]);
  const proxy = await startCountingProxy(server.endpoint);
  const bin = join(o.repo, "bin/fansync.js");
  const url = `s3://${o.bucket}/${o.prefix}`;
  const logStream = createWriteStream(o.logPath, { flags: "a" });
  const daemons: ChildProcess[] = [];
  try {
    for (const [i, root] of roots.entries()) {
      const child = spawn(bin, ["sync", root, url, "--endpoint-url", proxy.endpoint, "--log-level", "warn", "--state-dir", join(o.workDir, `state-${i}`), "--node-id", `n${i}`, "--delay", `${DELAY_MS}ms`, "--interval", `${INTERVAL_MS}ms`], { env: o.env, stdio: ["ignore", "pipe", "pipe"] });
      child.stdout?.pipe(logStream, { end: false });
      child.stderr?.pipe(logStream, { end: false });
      daemons.push(child);
    }
    const deadline = Date.now() + 120_000;
    for (;;) {
      const ok = roots.every((r) => {
        const c = compareListing(base, readTreeSizes(r));
        return c.present === c.expected;
      });
      if (ok) break;
      if (daemons.some((d) => d.exitCode !== null)) throw new Error(`a daemon exited early (${daemons.map((d) => d.exitCode).join(", ")})`);
      if (Date.now() > deadline) throw new Error("the nodes did not hold the base tree after 120 s");
      await sleep(100);
    }
    await sleep(1000);
    const before = proxy.snapshot();
    const rnd = prng(hash32(`sync-propagation/${o.seed}`));
    const one = async (from: string, to: readonly string[], rel: string): Promise<number | undefined> => {
      const body = contentFor(rel, 1024 + Math.floor(rnd() * 19 * 1024), o.seed, 0);
      mkdirSync(dirname(join(from, rel)), { recursive: true });
      const fh = await open(join(from, rel), "w");
      await fh.writeFile(body);
      await fh.close();
      const t0 = performance.now();
      const pending = new Set(to);
      while (performance.now() - t0 < PER_FILE_TIMEOUT_MS && pending.size > 0) {
        for (const r of [...pending]) if (await arrived(join(r, rel), body)) pending.delete(r);
        if (pending.size > 0) await sleep(5);
      }
      return pending.size === 0 ? performance.now() - t0 : undefined;
    };
    const [a, b, c] = roots as [string, string, string];
    for (let i = 0; i < o.files; i++) {
      const ms = await one(a, [b, c], `new/file-${i}.html`);
      if (ms === undefined) result.lost++;
      else result.samplesMs.push(ms);
      o.log(`sync propagation A→B,C ${i + 1}/${o.files}: ${ms === undefined ? "LOST" : `${Math.round(ms)} ms`}`);
      await sleep(300);
      const back = await one(c, [a, b], `uploads/upload-${i}.bin`);
      if (back === undefined) result.lost++;
      else result.reverseMs.push(back);
      await sleep(300);
    }
    const counts = diffCounts(proxy.snapshot(), before);
    result.note = `Requests through the proxy while ${2 * o.files} files travelled (three daemons, idle polling included): ${formatRequests([{ wallMs: 0, requests: counts.requests, bytesUp: 0, bytesDown: 0 }])}.`;
    if (result.samplesMs.length > 0) {
      result.p50 = percentile(result.samplesMs, 50);
      result.p95 = percentile(result.samplesMs, 95);
    }
    if (result.reverseMs.length > 0) {
      result.reverseP50 = percentile(result.reverseMs, 50);
      result.reverseP95 = percentile(result.reverseMs, 95);
    }
  } catch (err) {
    result.status = "failed";
    result.note = err instanceof Error ? err.message : String(err);
    o.log(`sync propagation failed: ${result.note}`);
  } finally {
    for (const d of daemons) if (d.exitCode === null && d.signalCode === null) d.kill("SIGTERM");
    await sleep(500);
    for (const d of daemons) if (d.exitCode === null && d.signalCode === null) d.kill("SIGKILL");
    await proxy.close();
    await server.stop();
    logStream.end();
    rmSync(o.workDir, { recursive: true, force: true });
  }
  return result;
}

// Run alone: one row, printed.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const work = join(os.tmpdir(), `fansync-sync-bench-${process.pid}`);
  const env = { ...process.env, AWS_ACCESS_KEY_ID: "bench", AWS_SECRET_ACCESS_KEY: "bench", AWS_REGION: "us-east-1" } as Record<string, string>;
  const r = await runSyncPropagation({ repo, workDir: work, bucket: "sync-bench", prefix: "site", seed: 1, files: Number(process.argv[2] ?? "20"), env, logPath: join(work + "-log", "sync.log"), log: (m) => process.stderr.write(m + "\n") });
  const f = (x: number | undefined) => (x === undefined ? "-" : `${Math.round(x)} ms`);
  process.stdout.write(`two-way propagation (3 sync daemons, moto): A→B,C p50 ${f(r.p50)} p95 ${f(r.p95)}; C→A,B p50 ${f(r.reverseP50)} p95 ${f(r.reverseP95)}; lost ${r.lost}; ${r.status}${r.note ? ` (${r.note})` : ""}\n`);
  process.exit(r.status === "ok" && r.lost === 0 ? 0 : 1);
}
