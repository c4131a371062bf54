/** Two-way `fansync sync` daemons as child processes, for integration tests (docroot, state, child). */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { type CapturedChild, startCli, waitCli } from "./cli.ts";
import { type Ctx as TestContext, expectCode } from "./ctx.ts";
import { readManifestDoc } from "./s3.ts";
import { snapshot } from "./tree.ts";
import { UsageError } from "../../src/core/errors.ts";
import { HashIndex } from "../../src/adapters/hash-index.ts";
import type { StateDir } from "../../src/adapters/state-dir.ts";

/** One node: its docroot, its state directory, its daemon while it runs. */
export interface SyncNode {
  name: string;
  root: string;
  state: string;
  child: CapturedChild | undefined;
}

/** A node with fresh directories (the docroot's parent exists; the docroot is created on first write). */
export function syncNode(ctx: TestContext, name: string): SyncNode {
  return { name, root: path.join(ctx.tmp(`sync-${name}`), "www"), state: ctx.tmp(`sync-${name}-state`), child: undefined };
}

/** Start the node's daemon with short windows (tests wait seconds, not minutes). */
export function startSync(ctx: TestContext, n: SyncNode, url: string, extra: readonly string[] = []): void {
  n.child = startCli(["sync", n.root, url, ...ctx.flags(n.state), "--node-id", n.name, "--delay", "150ms", "--max-delay", "1s", "--interval", "300ms", ...extra]);
}

/** SIGTERM the daemon and expect a clean exit. */
export async function stopSync(n: SyncNode): Promise<void> {
  const c = n.child;
  if (!c) return;
  n.child = undefined;
  c.kill("SIGCONT");
  c.kill("SIGTERM");
  const r = await waitCli(c, 40_000);
  expectCode(r, 0);
}

/** Poll `fn` until it returns a value; on timeout fail with the nodes' recent output. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000, nodes: readonly SyncNode[] = []): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const logs = nodes.map((n) => `--- ${n.name}\n${n.child?.out.stdout.slice(-4000) ?? ""}\n${n.child?.out.stderr.slice(-2000) ?? ""}`).join("\n");
      throw new Error(`timed out waiting for ${what}${last ? ` (${String(last)})` : ""}\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** A docroot file's text, or undefined. */
export const textOf = (n: SyncNode, p: string): Promise<string | undefined> => readFile(path.join(n.root, p), "utf8").catch(() => undefined);

/** Every docroot equals the head's manifest (path → sha256); returns the generation. */
export async function allEqualHead(ctx: TestContext, bucket: string, prefix: string, nodes: readonly SyncNode[]): Promise<number | undefined> {
  const { header, entries } = await readManifestDoc(ctx.server.client, bucket, prefix);
  const want = JSON.stringify(entries.map((e) => [e.path, e.sha256]).sort());
  for (const n of nodes) {
    const snap = await snapshot(n.root);
    if (JSON.stringify([...snap].map(([p, s]) => [p, s.sha256]).sort()) !== want) return undefined;
  }
  return header.generation as number;
}

/** The node's sync state directory (under its --state-dir). */
export async function syncStateDir(n: SyncNode): Promise<string> {
  const top = (await readdir(n.state)).find((d) => d.startsWith("sync-"));
  if (!top) throw new Error(`${n.name} has no sync state directory yet`);
  return path.join(n.state, top);
}

/** The contents of every version the node kept, by the path it was kept for. */
export async function keptContents(n: SyncNode): Promise<{ path: string; reason: string; text: string }[]> {
  const dir = await syncStateDir(n);
  const lines = (await readFile(path.join(dir, "conflicts.ndjson"), "utf8").catch(() => "")).split("\n").filter(Boolean);
  const out: { path: string; reason: string; text: string }[] = [];
  for (const l of lines) {
    const k = JSON.parse(l) as { path: string; reason: string; kept: string };
    out.push({ path: k.path, reason: k.reason, text: await readFile(path.join(dir, "conflicts", k.kept), "utf8") });
  }
  return out;
}

/** The node's status file. */
export async function syncStatusOf(n: SyncNode): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path.join(await syncStateDir(n), "sync-status.json"), "utf8")) as Record<string, unknown>;
}

/**
 * The publisher of a two-way node run in-process that has nothing of its own to publish: it shares
 * the node's hash index (Publisher.hashes) and refuses, saying `why`, if a round ever asks it to publish.
 */
export function nothingToPublish(state: StateDir, why: string) {
  return { hashes: new HashIndex(state.index), holdLease: async () => {}, releaseLease: async () => {}, reconcile: () => Promise.reject(new UsageError(why)) };
}
