// Scenario 5: propagation latency with both daemons running (`watch` on the master, `pull --watch`
// on the node). Files are written one at a time; each is timed from close() on the master until the
// node has it complete (size and bytes equal), polling the node path every 5 ms.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { open, readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { startCountingProxy, diffCounts } from "./counting-proxy.ts";
import { readPeakRssKb, runMeasured } from "./measure.ts";
import type { Propagation } from "./results.ts";
import { startS3Server, type ServerKind } from "./server.ts";
import { contentFor, planTree, prng, hash32, writeTree, type TreeSpec } from "./tree.ts";
import { compareListing, readTreeSizes } from "./verify.ts";
import { formatRequests } from "./report.ts";

/** What runPropagation needs from the orchestrator. */
export type PropagationOptions = {
  repo: string;
  workDir: string;
  serverKind: ServerKind;
  bucket: string;
  prefix: string;
  seed: number;
  files: number;
  env: Record<string, string>;
  logPath: string;
  log: (msg: string) => void;
};

const DELAY_MS = 100;
const INTERVAL_MS = 200;
const PER_FILE_TIMEOUT_MS = 30_000;
const BASE: TreeSpec = { name: "propagation-base", files: 500, dirs: 10, minSize: 1024, maxSize: 20 * 1024, bigFiles: 0, bigMinSize: 0, bigMaxSize: 0, unicode: false };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function waitExit(child: ChildProcess, ms: number): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      resolve(null);
    }, ms);
    child.once("exit", (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

/** True once `path` exists with exactly `want`'s bytes. */
export async function arrived(path: string, want: Buffer): Promise<boolean> {
  try {
    if ((await stat(path)).size !== want.length) return false;
    return (await readFile(path)).equals(want);
  } catch {
    return false;
  }
}

/** Runs the daemons, writes the files, returns the latencies. Never throws: failures become the status. */
/** A fresh work directory with an empty master and node docroot, and an empty log: where a scenario starts. */
export function freshRunDirs(o: Pick<PropagationOptions, "workDir" | "logPath">): { master: string; node: string } {
  rmSync(o.workDir, { recursive: true, force: true });
  const master = join(o.workDir, "master");
  const node = join(o.workDir, "node");
  mkdirSync(master, { recursive: true });
  mkdirSync(node, { recursive: true });
  mkdirSync(dirname(o.logPath), { recursive: true });
  writeFileSync(o.logPath, "");
  return { master, node };
}

export async function runPropagation(o: PropagationOptions): Promise<Propagation> {
  const result: Propagation = { status: "ok", samplesMs: [], files: o.files, lost: 0, delayMs: DELAY_MS, intervalMs: INTERVAL_MS };
  const { master, node } = freshRunDirs(o);
  const base = planTree(BASE, o.seed);
  writeTree(master, base, o.seed);
  const server = await startS3Server(o.serverKind, [o.bucket]);
  const proxy = await startCountingProxy(server.endpoint);
  const bin = join(o.repo, "bin/fansync.js");
  const url = `s3://${o.bucket}/${o.prefix}`;
  const common = ["--endpoint-url", proxy.endpoint, "--log-level", "warn"];
  const daemons: ChildProcess[] = [];
  const logStream = createWriteStream(o.logPath, { flags: "a" });
  const daemon = (args: string[]): ChildProcess => {
    const child = spawn(bin, args, { env: o.env, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.pipe(logStream, { end: false });
    child.stderr?.pipe(logStream, { end: false });
    daemons.push(child);
    return child;
  };
  try {
    const first = await runMeasured(
      { cmd: bin, args: ["push", master, url, ...common, "--state-dir", join(o.workDir, "watch-state")], env: o.env },
      o.logPath,
      600_000,
    );
    if (first.exitCode !== 0) throw new Error(`initial push failed (exit ${first.exitCode}): ${first.tail.slice(-200)}`);
    const watch = daemon(["watch", master, url, ...common, "--state-dir", join(o.workDir, "watch-state"), "--delay", `${DELAY_MS}ms`]);
    const pull = daemon(["pull", url, node, ...common, "--state-dir", join(o.workDir, "pull-state"), "--watch", "--interval", `${INTERVAL_MS}ms`]);
    // Wait for the node to hold the base tree: the daemons are then warm and idle.
    const deadline = Date.now() + 120_000;
    for (;;) {
      const c = compareListing(base, readTreeSizes(node));
      if (c.present === c.expected) break;
      if (watch.exitCode !== null || pull.exitCode !== null) throw new Error(`a daemon exited early (watch ${watch.exitCode}, pull ${pull.exitCode})`);
      if (Date.now() > deadline) throw new Error(`node had ${c.present} of ${c.expected} base files after 120 s`);
      await sleep(100);
    }
    await sleep(1000);
    const before = proxy.snapshot();
    const rnd = prng(hash32(`propagation/${o.seed}`));
    for (let i = 0; i < o.files; i++) {
      const rel = `new/file-${i}.html`;
      const body = contentFor(rel, 1024 + Math.floor(rnd() * 19 * 1024), o.seed, 0);
      mkdirSync(join(master, "new"), { recursive: true });
      const fh = await open(join(master, rel), "w");
      await fh.writeFile(body);
      await fh.close();
      const t0 = performance.now();
      let ok = false;
      while (performance.now() - t0 < PER_FILE_TIMEOUT_MS) {
        if (await arrived(join(node, rel), body)) {
          ok = true;
          break;
        }
        await sleep(5);
      }
      if (ok) result.samplesMs.push(performance.now() - t0);
      else result.lost++;
      o.log(`propagation ${i + 1}/${o.files}: ${ok ? `${Math.round(result.samplesMs[result.samplesMs.length - 1] ?? 0)} ms` : "LOST"}`);
      // A pause between files, so each measures one change travelling alone.
      await sleep(300);
    }
    const counts = diffCounts(proxy.snapshot(), before);
    result.note = `Requests through the proxy while the ${o.files} files travelled (both daemons, idle polling included): ${formatRequests([{ wallMs: 0, requests: counts.requests, bytesUp: 0, bytesDown: 0 }])}.`;
    const wr = watch.pid === undefined ? undefined : readPeakRssKb(watch.pid);
    const pr = pull.pid === undefined ? undefined : readPeakRssKb(pull.pid);
    if (wr !== undefined) result.watchRssKb = wr;
    if (pr !== undefined) result.pullRssKb = pr;
    watch.kill("SIGTERM");
    pull.kill("SIGTERM");
    result.watchExit = await waitExit(watch, 15_000);
    result.pullExit = await waitExit(pull, 15_000);
  } catch (err) {
    result.status = "failed";
    result.note = err instanceof Error ? err.message : String(err);
    o.log(`propagation failed: ${result.note}`);
  } finally {
    for (const d of daemons) if (d.exitCode === null && d.signalCode === null) d.kill("SIGKILL");
    await proxy.close();
    await server.stop();
    logStream.end();
    rmSync(o.workDir, { recursive: true, force: true });
  }
  return result;
}
