/**
 * `fansync demo [--dir DIR] [--keep-running]`: the whole fan-out on this machine, no cloud account.
 * An embedded S3 server (fauxqs) holds a primary and three regional buckets; the real CLI runs as
 * child processes: the uploader (watch), the replicator (--watch) and three pullers (each its region
 * first, the primary as fallback). The demo edits the master docroot, shows each node's generation
 * live, times every change to every node, and exits 0 once all docroots equal the master byte for
 * byte (compared by sha256). Its last act is two-way: the master and the US web node switch to
 * `fansync sync` (the web node owning uploads/** only) and a user upload on the web node reaches the
 * master and every other node. fauxqs ignores conditional writes, which sync needs: every client
 * goes through the demo's conditional-write gate (gate.ts). The web nodes are woken by events
 * (each its own SQS queue on its bucket's SNS topic, a 10-minute poll as the safety net); fauxqs's
 * S3 sends no notifications, so the gate relays each head write to the topic (events.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ExitCode, UsageError } from "../core/errors.ts";
import { parseLocation } from "../core/location.ts";
import { type FileMap, sha256Hex } from "../core/manifest.ts";
import { hashFile, scanTree } from "../adapters/local-tree.ts";
import { S3Store } from "../adapters/s3-store.ts";
import { readJson } from "../adapters/state-files.ts";
import { listJobStateDirs } from "../adapters/state-dir.ts";
import { readHead, readManifest } from "../engine/generation-reader.ts";
import { burstFile, initialSite, type SiteFiles } from "./site.ts";
import { sleep } from "../engine/sleep.ts";
import { createServer } from "node:net";
import { startDemoGate } from "./gate.ts";
import { formatWoken, type NodeEvents, startDemoEvents } from "./events.ts";

/** A TCP port free on 127.0.0.1 right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

/** Options of the demo. */
export interface DemoOptions {
  readonly dir: string | undefined;
  readonly keepRunning: boolean;
  /** Keep the demo's folder (docroots, state, logs) after a clean run. */
  readonly keep?: boolean | undefined;
  /** Port of the uploader's status page (default: a free one). */
  readonly httpPort?: number | undefined;
}

const REGIONS = ["us", "jp", "uk"] as const;
const PRIMARY = "s3://fansync-demo-primary/site/";
const regionUrl = (r: string) => `s3://fansync-demo-${r}/site/`;
// How often the demo looks at every node; arrival times are this precise.
const POLL_MS = 100;
// A change that has not reached every node by then fails the demo.
const CHANGE_TIMEOUT_MS = 60_000;
// Local-only credentials for the embedded server, given to the children's environment only.
const DEMO_ENV = { AWS_ACCESS_KEY_ID: "fansync-demo", AWS_SECRET_ACCESS_KEY: "fansync-demo", AWS_REGION: "us-east-1" };
// The web nodes' poll with events: long enough that a change arriving within CHANGE_TIMEOUT_MS came by an event.
const EVENTS_INTERVAL = "10m";

/** A node the demo watches: a bucket's head or a puller's status file. */
interface Node {
  readonly name: string;
  readonly read: () => Promise<number | undefined>;
  gen: number;
  /** When each generation was first seen. */
  readonly seen: { gen: number; at: number }[];
}

/** One edit of the master docroot and how to recognise it in a generation's files. */
interface Change {
  readonly name: string;
  readonly apply: () => Promise<void>;
  readonly landed: (files: FileMap) => boolean;
}

/** Run the demo; returns the exit code. */
export async function runDemo(o: DemoOptions, signal: AbortSignal): Promise<number> {
  // Before anything is created: a release without the server says so and leaves nothing behind.
  const { startFauxqs } = await loadDemoServer();
  const out = (s: string) => process.stdout.write(s + "\n");
  const own = o.dir === undefined;
  const dir = own ? mkdtempSync(path.join(os.tmpdir(), "fansync-demo-")) : path.resolve(o.dir as string);
  // A previous run's docroots and state belong to a server that no longer exists: start clean.
  for (const sub of ["master", "nodes", "state", "logs"]) rmSync(path.join(dir, sub), { recursive: true, force: true });
  const master = path.join(dir, "master");
  const logs = path.join(dir, "logs");
  mkdirSync(master, { recursive: true });
  mkdirSync(logs, { recursive: true });

  const server = await startFauxqs({ host: "127.0.0.1", port: 0, logger: false });
  const buckets = [PRIMARY, ...REGIONS.map(regionUrl)].map((u) => parseLocation(u).bucket);
  const events = startDemoEvents(server, buckets);
  // Every client reaches fauxqs through the conditional-write gate, so the two-way act's writers
  // serialise as they would on S3 (fauxqs alone ignores If-Match and If-None-Match); the gate also
  // hands every write to the event relay.
  const gate = await startDemoGate(server.port, { onPut: (p) => events.relay(p) });
  const endpoint = gate.endpoint;
  // The uploader serves the fleet's status page; a free port is taken now (a port in use would stop the demo).
  const httpPort = o.httpPort ?? (await freePort());
  for (const url of [PRIMARY, ...REGIONS.map(regionUrl)]) server.createBucket(parseLocation(url).bucket);

  const children = new Map<string, ChildProcess>();
  // Children the demo stops on purpose (the two-way act swaps the uploader and one puller for sync).
  const retired = new Set<string>();
  const killAll = () => {
    for (const c of children.values()) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  };
  // Whatever happens to this process, its children do not outlive it.
  process.once("exit", killAll);
  let failure: string | undefined;
  let stopping = false;
  let code: number = ExitCode.ok;
  try {
    const { S3Client } = await import("@aws-sdk/client-s3");
    const client = new S3Client({
      endpoint,
      forcePathStyle: true,
      region: DEMO_ENV.AWS_REGION,
      credentials: { accessKeyId: DEMO_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: DEMO_ENV.AWS_SECRET_ACCESS_KEY },
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
    const storeOf = (url: string) => ({ loc: parseLocation(url), store: new S3Store({ client, bucket: parseLocation(url).bucket, endpoint }) });
    const primary = storeOf(PRIMARY);
    const headGen = (url: string) => {
      const s = storeOf(url);
      return async () => (await readHead(s.store, s.loc, signal).catch(() => undefined))?.head.generation;
    };
    const statusGen = (file: string) => async () => (await readJson<{ generation?: number }>(file).catch(() => undefined))?.generation;
    const nodes: Node[] = [
      { name: "primary", read: headGen(PRIMARY), gen: 0, seen: [] },
      ...REGIONS.map((r) => ({ name: `region-${r}`, read: headGen(regionUrl(r)), gen: 0, seen: [] })),
      ...REGIONS.map((r) => ({ name: `web-${r}`, read: statusGen(path.join(dir, "nodes", r, "status.json")), gen: 0, seen: [] })),
    ];

    out(`fansync demo: embedded S3 server (fauxqs) on ${endpoint}; files in ${dir}`);
    out(`  primary ${PRIMARY} → regions ${REGIONS.map(regionUrl).join(" ")}`);
    out(`  web nodes ${REGIONS.join(", ")}: each pulls its region first, the primary as fallback; logs in ${logs}`);
    out(`  events: each web node long-polls its own SQS queue on its bucket's SNS topic (pull --events, --interval ${EVENTS_INTERVAL} as the safety net);`);
    out(`    fauxqs's S3 sends no bucket notifications, so the demo's gate relays each head.json write to the topic in their place`);
    const site = initialSite();
    await writeSite(master, site);

    const env: NodeJS.ProcessEnv = { ...process.env, ...DEMO_ENV };
    for (const k of ["AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"]) delete env[k];
    const common = ["--endpoint-url", endpoint, "--log-format", "json"];
    const start = (name: string, args: string[]) => {
      const fd = openSync(path.join(logs, `${name}.log`), "a");
      const child = spawn(process.execPath, [FANSYNC_BIN, ...args, ...common], { stdio: ["ignore", fd, fd], env });
      closeSync(fd);
      children.set(name, child);
      child.once("exit", (c, s) => {
        if (!stopping && !retired.has(name)) failure ??= `${name} exited unexpectedly (${s ?? `code ${c}`}); see ${path.join(logs, `${name}.log`)}`;
      });
    };
    // Stop one child on purpose (SIGTERM: it drains) and wait until it has exited.
    const retire = async (name: string) => {
      retired.add(name);
      const c = children.get(name);
      if (c) await stopAll(new Map([[name, c]]));
    };
    const monitor = new Monitor(nodes, out, () => failure, signal);
    const changes: { change: Change; gen: number; t0: number }[] = [];
    const track = async (change: Change, t0: number) => {
      const gen = await monitor.untilPrimaryHas(change, primary, t0);
      await monitor.untilAll(gen, change.name, t0);
      changes.push({ change, gen, t0 });
    };

    // The initial site: the uploader publishes it, the replicator fans it out, then the pullers start
    // (a puller started before any head exists would only back off).
    const initial: Change = { name: `initial site (${Object.keys(site).length} files)`, apply: async () => {}, landed: hasAll(site) };
    const t0 = Date.now();
    monitor.section(initial.name);
    start("uploader", ["watch", master, PRIMARY, "--state-dir", path.join(dir, "state", "uploader"), "--delay", "200ms", "--max-delay", "1s", "--http", `127.0.0.1:${httpPort}`, ...REGIONS.flatMap((r) => ["--fleet", regionUrl(r)])]);
    out(`  status page, /metrics and /healthz: http://127.0.0.1:${httpPort}/ (the uploader's)`);
    start("replicator", ["replicate", PRIMARY, ...REGIONS.map(regionUrl), "--watch", "--interval", "250ms", "--state-dir", path.join(dir, "state", "replicator")]);
    const g1 = await monitor.untilPrimaryHas(initial, primary, t0);
    await monitor.untilAll(g1, initial.name, t0, ["primary", ...REGIONS.map((r) => `region-${r}`)]);
    for (const r of REGIONS) {
      const www = path.join(dir, "nodes", r, "www");
      await mkdir(www, { recursive: true });
      start(`puller-${r}`, ["pull", regionUrl(r), www, "--source", PRIMARY, "--watch", "--events", events.queueFor(`web-${r}`, parseLocation(regionUrl(r)).bucket), "--interval", EVENTS_INTERVAL, "--status-file", path.join(dir, "nodes", r, "status.json"), "--state-dir", path.join(dir, "state", r), "--report", "--node-id", `web-${r}`]);
    }
    await monitor.untilAll(g1, initial.name, t0);
    changes.push({ change: initial, gen: g1, t0 });

    const edits: Change[] = [
      addFile(master, "blog/post-4.html", "<!doctype html><h1>Post 4</h1><p>Fresh from the master.</p>\n"),
      addFile(master, "css/site.css", "body { font-family: Georgia, serif; margin: 2rem auto; max-width: 42rem; color: #111 }\n", "modify css/site.css"),
      {
        name: "delete about.html",
        apply: () => rm(path.join(master, "about.html")),
        landed: (f) => !f.has("about.html"),
      },
      {
        name: "rename img/hero.png → img/banner.png",
        apply: () => rename(path.join(master, "img/hero.png"), path.join(master, "img/banner.png")),
        landed: (f) => !f.has("img/hero.png") && f.get("img/banner.png")?.sha256 === sha256Hex(site["img/hero.png"] as Buffer),
      },
      burst(master, 1000),
    ];
    for (const change of edits) {
      monitor.section(change.name);
      const t = Date.now();
      await change.apply();
      await track(change, t);
    }

    // The two-way act: the master and the US web node become `sync` writers on the primary (the web
    // node owns uploads/** only, as an application server taking user uploads would), and a file
    // uploaded on the web node reaches the master's docroot, every region and the other web nodes.
    monitor.section("two-way: the master and web-us switch to `fansync sync` (web-us owns uploads/**)");
    const us = path.join(dir, "nodes", "us");
    // What events woke the US puller before it makes way for the sync node (which writes the same status file).
    const pullerUs = await readNodeEvents("web-us (pull, before the two-way act)", path.join(us, "status.json"));
    await retire("uploader");
    start("sync-master", ["sync", master, PRIMARY, "--node-id", "master", "--state-dir", path.join(dir, "state", "sync-master"), "--delay", "200ms", "--max-delay", "1s", "--interval", "250ms", "--http", `127.0.0.1:${httpPort}`]);
    await retire("puller-us");
    start("sync-us", ["sync", path.join(us, "www"), PRIMARY, "--owns", "uploads/**", "--node-id", "web-us", "--report", "--state-dir", path.join(dir, "state", "sync-us"), "--status-file", path.join(us, "status.json"), "--delay", "200ms", "--max-delay", "1s", "--events", events.queueFor("web-us-sync", parseLocation(PRIMARY).bucket), "--interval", EVENTS_INTERVAL]);
    await untilSyncReady([path.join(dir, "state", "sync-master"), path.join(dir, "state", "sync-us")], () => failure, signal);
    out("  both writers converged to the head; the US node now uploads what its users send");
    const photo = seededUpload();
    const upload: Change = {
      name: `user upload on web-us: ${photo.path}`,
      apply: async () => {
        await mkdir(path.join(us, "www", path.dirname(photo.path)), { recursive: true });
        await writeFile(path.join(us, "www", photo.path), photo.content);
      },
      landed: (f) => f.get(photo.path)?.sha256 === sha256Hex(photo.content),
    };
    monitor.section(upload.name);
    const tu = Date.now();
    await upload.apply();
    await track(upload, tu);
    await untilFile(path.join(master, photo.path), photo.content, tu, () => failure, signal);
    out(`  ✓ ${photo.path} is in the master's docroot too (${((Date.now() - tu) / 1000).toFixed(1)}s)`);

    out("");
    out(`Summary: seconds from the edit until each node held it (polled every ${POLL_MS} ms)`);
    out(table(changes.map(({ change, gen, t0: t }) => [change.name, `g${gen}`, ...nodes.map((n) => fmt(arrival(n, gen, t)))]), ["change", "gen", ...nodes.map((n) => n.name)]));
    out("");
    const woken = [pullerUs, ...(await Promise.all(REGIONS.map((r) => readNodeEvents(r === "us" ? "web-us (sync)" : `web-${r}`, path.join(dir, "nodes", r, "status.json")))))];
    for (const l of formatWoken(woken, events.relayed, EVENTS_INTERVAL)) out(l);
    const diffs = await compareDocroots(master, REGIONS.map((r) => ({ name: `web-${r}`, root: path.join(dir, "nodes", r, "www") })));
    const files = (await hashTree(master)).size;
    if (diffs.length === 0) {
      out(`\n✓ all ${REGIONS.length} web docroots equal the master byte for byte (${files} files, sha256 compared)`);
    } else {
      code = ExitCode.partial;
      out(`\n✗ ${diffs.length} difference(s) between the master and the web docroots:`);
      for (const d of diffs.slice(0, 20)) out(`  ${d}`);
      process.stderr.write(`fansync demo: web docroots differ from the master (first: ${diffs[0]}); logs in ${logs}\n`);
    }

    if (o.keepRunning && code === ExitCode.ok) {
      out("\nStill running (Ctrl-C stops everything). Explore:");
      out(`  edit files in ${master} and watch them reach ${path.join(dir, "nodes", "*", "www")}`);
      out(`  open http://127.0.0.1:${httpPort}/ for the fleet page (node table, lag chart), /metrics, /healthz`);
      out(`  AWS_ACCESS_KEY_ID=${DEMO_ENV.AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY=${DEMO_ENV.AWS_SECRET_ACCESS_KEY} npx fansync status ${PRIMARY} ${REGIONS.map(regionUrl).join(" ")} --endpoint-url ${endpoint}`);
      out(`  npx fansync status --status-file ${path.join(dir, "nodes", "us", "status.json")} --state-dir ${path.join(dir, "state", "replicator")}`);
      out(`  AWS_ACCESS_KEY_ID=${DEMO_ENV.AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY=${DEMO_ENV.AWS_SECRET_ACCESS_KEY} npx fansync pull ${regionUrl("jp")} /tmp/my-node --endpoint-url ${endpoint}`);
      out(`  logs: ${logs}`);
      await monitor.follow();
    }
    stopping = true;
  } catch (err) {
    stopping = true;
    if (!signal.aborted) throw err;
    code = ExitCode.interrupted;
  } finally {
    await stopAll(children);
    process.removeListener("exit", killAll);
    await gate.close();
    await server.stop();
    if (own && code === ExitCode.ok && !o.keepRunning && !o.keep) {
      rmSync(dir, { recursive: true, force: true });
      out(`\nThe demo's docroots, state and logs were removed: --keep keeps them, --keep-running keeps everything running to explore.`);
    } else if (code !== ExitCode.ok) process.stderr.write(`fansync demo: files and logs kept in ${dir}\n`);
    else out(`\nKept in ${dir}: the master's docroot in ${path.join(dir, "master")}, each web node's in ${path.join(dir, "nodes", "<region>", "www")}, logs in ${path.join(dir, "logs")}.`);
  }
  return code;
}

/**
 * The demo's embedded S3 server. It is a development dependency: the npm tarball does not install
 * it and the single executable leaves it out of its bundle, so a release says how to get the demo.
 */
async function loadDemoServer(): Promise<typeof import("fauxqs")> {
  try {
    return await import("fauxqs");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ERR_MODULE_NOT_FOUND") throw err;
    throw new UsageError("the demo's embedded S3 server (the fauxqs package) is not part of a release: run `npm ci && npx fansync demo` in a clone of fansync's repository", { cause: err });
  }
}

/** Path to the launcher (bin/fansync.js): the children are the real CLI. */
const FANSYNC_BIN = fileURLToPath(new URL("../../bin/fansync.js", import.meta.url));

/** Watches the nodes and prints a line whenever a generation moves. */
class Monitor {
  private readonly nodes: Node[];
  private readonly out: (s: string) => void;
  private readonly failed: () => string | undefined;
  private readonly signal: AbortSignal;
  private sectionStart = Date.now();

  constructor(nodes: Node[], out: (s: string) => void, failed: () => string | undefined, signal: AbortSignal) {
    this.nodes = nodes;
    this.out = out;
    this.failed = failed;
    this.signal = signal;
  }

  section(name: string): void {
    this.sectionStart = Date.now();
    this.out(`\n▶ ${name}`);
  }

  /** Poll every node once; print the generations when any moved. */
  async poll(): Promise<void> {
    const now = Date.now();
    const gens = await Promise.all(this.nodes.map((n) => n.read()));
    let moved = false;
    gens.forEach((g, i) => {
      const n = this.nodes[i] as Node;
      if (g !== undefined && g > n.gen) {
        n.gen = g;
        n.seen.push({ gen: g, at: now });
        moved = true;
      }
    });
    if (moved) {
      const show = (prefix: string) => this.nodes.filter((n) => n.name.startsWith(prefix)).map((n) => `${n.name.slice(prefix.length)} g${n.gen}`).join(" ");
      this.out(`  +${((now - this.sectionStart) / 1000).toFixed(1).padStart(5)}s  primary g${(this.nodes[0] as Node).gen} │ regions ${show("region-")} │ web ${show("web-")}`);
    }
  }

  /** The first primary generation whose manifest holds the change. */
  async untilPrimaryHas(change: Change, primary: { store: S3Store; loc: ReturnType<typeof parseLocation> }, t0: number): Promise<number> {
    let checked = 0;
    for (;;) {
      await this.tick(t0, change.name);
      const gen = (this.nodes[0] as Node).gen;
      if (gen > checked) {
        const hs = await readHead(primary.store, primary.loc, this.signal);
        if (hs) {
          const { files } = await readManifest(primary.store, hs.head, this.signal);
          checked = hs.head.generation;
          if (change.landed(files)) return hs.head.generation;
        }
      }
    }
  }

  /** Wait until the named nodes (default all) are at `gen` or later. */
  async untilAll(gen: number, what: string, t0: number, names?: readonly string[]): Promise<void> {
    const which = this.nodes.filter((n) => !names || names.includes(n.name));
    while (!which.every((n) => n.gen >= gen)) await this.tick(t0, what);
    if (!names) {
      // Buckets are locations, pullers are nodes: say which is which.
      const web = which.filter((n) => n.name.startsWith("web-")).length;
      this.out(`  ✓ generation ${gen} in all ${which.length - web} locations and on all ${web} web nodes in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    }
  }

  /** --keep-running: keep printing until interrupted. */
  async follow(): Promise<void> {
    this.sectionStart = Date.now();
    while (!this.signal.aborted) {
      await this.poll();
      await sleep(500, this.signal);
    }
  }

  private async tick(t0: number, what: string): Promise<void> {
    this.signal.throwIfAborted();
    const f = this.failed();
    if (f) throw new Error(f);
    if (Date.now() - t0 > CHANGE_TIMEOUT_MS) {
      const late = this.nodes.map((n) => `${n.name} g${n.gen}`).join(", ");
      throw new Error(`"${what}" did not reach every node within ${CHANGE_TIMEOUT_MS / 1000}s (${late})`);
    }
    await this.poll();
    await sleep(POLL_MS, this.signal);
  }
}

function arrival(n: Node, gen: number, t0: number): number | undefined {
  const s = n.seen.find((x) => x.gen >= gen);
  return s ? Math.max(0, s.at - t0) / 1000 : undefined;
}

function fmt(s: number | undefined): string {
  return s === undefined ? "-" : s.toFixed(1);
}

function table(rows: string[][], header: string[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ");
  return [line(header), widths.map((w) => "─".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

async function writeSite(root: string, files: SiteFiles): Promise<void> {
  for (const [p, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, p)), { recursive: true });
    await writeFile(path.join(root, p), content);
  }
}

function hasAll(files: SiteFiles): (f: FileMap) => boolean {
  const want = Object.entries(files).map(([p, c]) => [p, sha256Hex(c)] as const);
  return (f) => want.every(([p, sha]) => f.get(p)?.sha256 === sha);
}

function addFile(master: string, rel: string, content: string, name = `add ${rel}`): Change {
  return { name, apply: () => writeSite(master, { [rel]: content }), landed: hasAll({ [rel]: content }) };
}

function burst(master: string, n: number): Change {
  const files: SiteFiles = {};
  for (let i = 1; i <= n; i++) {
    const f = burstFile(i);
    files[f.path] = f.content;
  }
  return {
    name: `burst of ${n.toLocaleString("en")} files`,
    apply: async () => {
      const entries = Object.entries(files);
      for (let i = 0; i < entries.length; i += 50) {
        await Promise.all(entries.slice(i, i + 50).map(([p, c]) => mkdir(path.dirname(path.join(master, p)), { recursive: true }).then(() => writeFile(path.join(master, p), c))));
      }
    },
    landed: hasAll(files),
  };
}

/** Every regular file under `root` → sha256. */
async function hashTree(root: string): Promise<Map<string, string>> {
  const { files } = await scanTree(root, { filter: { matches: () => true, prunesDir: () => false } });
  const out = new Map<string, string>();
  for (const f of files) out.set(f.path, await hashFile(path.join(root, f.path)));
  return out;
}

/** Differences between the master and each docroot, one line each. */
async function compareDocroots(master: string, nodes: readonly { name: string; root: string }[]): Promise<string[]> {
  const want = await hashTree(master);
  const diffs: string[] = [];
  for (const n of nodes) {
    const got = await hashTree(n.root);
    for (const [p, sha] of want) {
      const g = got.get(p);
      if (g === undefined) diffs.push(`${n.name}: missing ${p}`);
      else if (g !== sha) diffs.push(`${n.name}: ${p} differs (sha256 ${g.slice(0, 12)}…, master ${sha.slice(0, 12)}…)`);
    }
    for (const p of got.keys()) if (!want.has(p)) diffs.push(`${n.name}: extra ${p}`);
  }
  return diffs;
}

/** The file a user uploads to the US web node in the two-way act (not text: a few KB of seeded bytes). */
function seededUpload(): { path: string; content: Buffer } {
  const content = Buffer.alloc(4096);
  let x = 2463534242;
  for (let i = 0; i < content.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    content[i] = x & 0xff;
  }
  return { path: "uploads/2026/user-photo.jpg", content };
}

/** Wait until each sync node's status (in its state directory) says it converged once. */
async function untilSyncReady(stateDirs: readonly string[], failed: () => string | undefined, signal: AbortSignal): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    signal.throwIfAborted();
    const f = failed();
    if (f) throw new Error(f);
    const ok = await Promise.all(stateDirs.map(async (d) => (await findSyncStatus(d))?.status === "OK"));
    if (ok.every(Boolean)) return;
    if (Date.now() - t0 > CHANGE_TIMEOUT_MS) throw new Error(`the sync writers did not converge within ${CHANGE_TIMEOUT_MS / 1000}s; see the sync-*.log files`);
    await sleep(POLL_MS, signal);
  }
}

/** A sync node's status, from the state directory it was given. */
async function findSyncStatus(stateDir: string): Promise<{ status?: string } | undefined> {
  for (const dir of await listJobStateDirs(stateDir, "sync")) {
    const st = await readJson<{ status?: string }>(dir.syncStatus).catch(() => undefined);
    if (st) return st;
  }
  return undefined;
}

/** A web node's event queue, from its status file. */
async function readNodeEvents(node: string, statusFile: string): Promise<NodeEvents> {
  const st = await readJson<{ events?: { messages?: number; state?: string } }>(statusFile).catch(() => undefined);
  return { node, messages: st?.events?.messages, state: st?.events?.state };
}

/** Wait until `file` holds exactly `content`. */
async function untilFile(file: string, content: Buffer, t0: number, failed: () => string | undefined, signal: AbortSignal): Promise<void> {
  const { readFile } = await import("node:fs/promises");
  for (;;) {
    signal.throwIfAborted();
    const f = failed();
    if (f) throw new Error(f);
    const got = await readFile(file).catch(() => undefined);
    if (got?.equals(content)) return;
    if (Date.now() - t0 > CHANGE_TIMEOUT_MS) throw new Error(`${file} did not arrive within ${CHANGE_TIMEOUT_MS / 1000}s; see the sync-*.log files`);
    await sleep(POLL_MS, signal);
  }
}

/** SIGTERM every child (they drain and exit), SIGKILL what is left after a deadline. */
async function stopAll(children: ReadonlyMap<string, ChildProcess>): Promise<void> {
  const alive = [...children.values()].filter((c) => c.exitCode === null && c.signalCode === null);
  await Promise.all(
    alive.map(
      (c) =>
        new Promise<void>((resolve) => {
          const t = setTimeout(() => c.kill("SIGKILL"), 10_000);
          c.once("exit", () => {
            clearTimeout(t);
            resolve();
          });
          c.kill("SIGTERM");
        }),
    ),
  );
}
