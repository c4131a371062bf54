/**
 * Two-way sync planning (pure): given the generation a node last converged to (its base), what its
 * docroot holds now and what the bucket's head holds now, decide per path who wins, what the node
 * publishes on top of the head (the rebase), what it takes from the head, and which losing versions
 * it keeps. Every node applies the same rule, and the chain of generations is one: whichever node
 * publishes a path last after seeing the other version decides, and every node ends identical.
 *
 * Decision table, per path (b = base, l = local, r = remote; "changed" = differs from b):
 *
 *   l changed | r changed | outcome
 *   no        | no/yes    | take r (nothing of the node's own)
 *   yes       | no        | publish l (if the node owns the path; else take r, keep l)
 *   yes       | yes, = l  | nothing: both sides made the same change
 *   yes       | yes, ≠ l  | conflict:
 *                              l deleted, r modified  → r wins (a modification beats a deletion)
 *                              l modified, r deleted  → l wins (published again)
 *                              both modified          → by the rule: newer mtime wins (ties: the
 *                                                       larger sha256, then the larger mode), or
 *                                                       always remote / always local
 *                           the loser's bytes are kept outside the docroot (never lost)
 *
 * File↔directory (issue 27): when the outcome would hold a file `d` and a file under `d/` (one node
 * turned a directory into a file, or a file into a directory, while another changed the other
 * shape), the directory wins, whichever side it is on and whatever the times: it may hold many
 * files of several nodes, the file is one version. The file is kept like any loser; the rest of
 * both sides' changes stand (deletions under the directory included). Where the node may not
 * publish the file's deletion (not owned), its own files under the directory lose instead.
 *
 * Joining (the first round of a node that starts with a docroot and a recorded base, e.g. restored
 * from an old snapshot): a local file that differs from the base counts as a local change only when
 * it is newer than the base's entry; an older one takes the remote version (and is kept).
 * A path the node does not own is never published: a local change there is kept and the published
 * version restored.
 */
import type { Entry } from "./manifest.ts";
import { compareUtf8 } from "./paths.ts";
import type { HeldFile } from "./plan.ts";

/** How a path changed on both sides is settled (delete vs modify always keeps the modification). */
export type ConflictRule = "newer" | "remote" | "local";

/** The conflict rules `--conflict` accepts. */
export const CONFLICT_RULES: readonly ConflictRule[] = ["newer", "remote", "local"];

/** A file's content facts (base, local or remote). */
export type FileFacts = HeldFile;

/** Why a version was kept instead of applied. */
export type KeepReason = "conflict" | "not-owned" | "older-than-base" | "changed-during-apply";

/** A version that lost and is kept outside the docroot. */
export interface KeptVersion {
  readonly path: string;
  /** Which version to keep: the docroot's file, or the head's object. */
  readonly from: "local" | "remote";
  readonly reason: KeepReason;
}

/** A path changed on both sides. */
export interface SyncConflict {
  readonly path: string;
  readonly winner: "local" | "remote";
  /**
   * "both-modified", "local-deleted" (remote modified), "remote-deleted" (local modified),
   * "file-directory" (a file on one side where the other has a directory).
   */
  readonly kind: "both-modified" | "local-deleted" | "remote-deleted" | "file-directory";
}

/** What one round does. */
export interface SyncPlan {
  /** Paths whose local state (the file, or its absence) goes into the next generation. */
  readonly publish: readonly string[];
  /** Paths whose local state is replaced by the head's (conflicts lost, not owned, older than base). */
  readonly restore: readonly string[];
  readonly conflicts: readonly SyncConflict[];
  /** Local changes to paths this node does not own (not published). */
  readonly notOwned: readonly string[];
  /** Versions to keep before anything is overwritten. */
  readonly keep: readonly KeptVersion[];
}

/** Inputs of {@link planSync}. */
export interface SyncPlanInput {
  /** What the node holds as the generation it last converged to. */
  readonly base: ReadonlyMap<string, FileFacts>;
  /** The docroot now. */
  readonly local: ReadonlyMap<string, FileFacts>;
  /** The head now. */
  readonly remote: ReadonlyMap<string, FileFacts>;
  /** Whether this node may publish a path. */
  readonly owns: (path: string) => boolean;
  readonly rule: ConflictRule;
  /** First round after start: local differences older than the base are not local changes. */
  readonly joining: boolean;
}

/** Same content and mode (mtime alone is not a change: a `touch` publishes nothing). */
export function sameFile(a: FileFacts | undefined, b: FileFacts | undefined): boolean {
  if (!a || !b) return a === b;
  return a.sha256 === b.sha256 && a.size === b.size && a.mode === b.mode;
}

/** The paths whose local state differs from the base (cheap: the daemon's "anything to do?"). */
export function localChanges(base: ReadonlyMap<string, FileFacts>, local: ReadonlyMap<string, FileFacts>): string[] {
  const out: string[] = [];
  for (const [p, l] of local) if (!sameFile(l, base.get(p))) out.push(p);
  for (const p of base.keys()) if (!local.has(p)) out.push(p);
  return out.sort(compareUtf8);
}

/**
 * Which of two different versions of a path wins under `rule`: true when the local one does.
 * Symmetric: every node compares the same two versions the same way, whichever side it is on.
 */
export function localWins(l: FileFacts, r: FileFacts, rule: ConflictRule): boolean {
  if (rule === "local") return true;
  if (rule === "remote") return false;
  if (l.mtimeMs !== r.mtimeMs) return l.mtimeMs > r.mtimeMs;
  if (l.sha256 !== r.sha256) return l.sha256 > r.sha256;
  return l.mode > r.mode;
}

/** Plan one round (see the module comment for the table). */
export function planSync(i: SyncPlanInput): SyncPlan {
  const publish: string[] = [];
  const restore: string[] = [];
  const conflicts: SyncConflict[] = [];
  const notOwned: string[] = [];
  const keep: KeptVersion[] = [];
  for (const p of localChanges(i.base, i.local)) {
    const b = i.base.get(p);
    const l = i.local.get(p);
    const r = i.remote.get(p);
    if (sameFile(l, r)) continue; // both sides made the same change, or the head already has it
    if (i.joining && l && b && l.mtimeMs <= b.mtimeMs) {
      // Restored from an older copy: not an edit made here. The head's version is taken; this one kept.
      restore.push(p);
      keep.push({ path: p, from: "local", reason: "older-than-base" });
      continue;
    }
    const remoteChanged = !sameFile(r, b);
    let wins: boolean;
    if (!remoteChanged) wins = true;
    else {
      const kind = !l ? "local-deleted" : !r ? "remote-deleted" : "both-modified";
      wins = kind === "remote-deleted" ? true : kind === "local-deleted" ? false : localWins(l as FileFacts, r as FileFacts, i.rule);
      if (!i.owns(p)) wins = false;
      conflicts.push({ path: p, winner: wins ? "local" : "remote", kind });
      // The loser's bytes (a deletion has none to keep).
      if (wins && r) keep.push({ path: p, from: "remote", reason: "conflict" });
      if (!wins && l) keep.push({ path: p, from: "local", reason: "conflict" });
      if (!wins) {
        restore.push(p);
        continue;
      }
    }
    if (!i.owns(p)) {
      notOwned.push(p);
      restore.push(p);
      if (l && !remoteChanged) keep.push({ path: p, from: "local", reason: "not-owned" });
      continue;
    }
    publish.push(p);
  }
  settleFileDirectory(i, { publish, restore, conflicts, notOwned, keep });
  return { publish: publish.sort(compareUtf8), restore: restore.sort(compareUtf8), conflicts, notOwned, keep };
}

/**
 * The file↔directory rule (module comment): rewrite the plan, in place, so that its outcome is a
 * tree. The outcome of a path is the local file when it is published, else the remote one.
 */
function settleFileDirectory(i: SyncPlanInput, plan: { publish: string[]; restore: string[]; conflicts: SyncConflict[]; notOwned: string[]; keep: KeptVersion[] }): void {
  const published = new Set(plan.publish);
  const from = (p: string): "local" | "remote" | undefined => (published.has(p) ? (i.local.has(p) ? "local" : undefined) : i.remote.has(p) ? "remote" : undefined);
  const outcome = new Set<string>();
  for (const p of i.remote.keys()) if (from(p)) outcome.add(p);
  for (const p of published) if (i.local.has(p)) outcome.add(p);
  // Each file that is also an ancestor directory of another outcome path, with what lies under it.
  const clashes = new Map<string, string[]>();
  for (const q of outcome) {
    for (let k = q.indexOf("/"); k !== -1; k = q.indexOf("/", k + 1)) {
      const a = q.slice(0, k);
      if (!outcome.has(a)) continue;
      const under = clashes.get(a) ?? [];
      under.push(q);
      clashes.set(a, under);
    }
  }
  if (clashes.size === 0) return;
  const drop = (list: string[], p: string) => {
    const at = list.indexOf(p);
    if (at !== -1) list.splice(at, 1);
  };
  const settle = (p: string, winner: "local" | "remote") => {
    for (let k = plan.conflicts.length - 1; k >= 0; k--) if (plan.conflicts[k]?.path === p) plan.conflicts.splice(k, 1);
    for (let k = plan.keep.length - 1; k >= 0; k--) if (plan.keep[k]?.path === p) plan.keep.splice(k, 1);
    plan.conflicts.push({ path: p, winner, kind: "file-directory" });
  };
  for (const [file, under] of [...clashes].sort((x, y) => compareUtf8(x[0], y[0]))) {
    if (from(file) === "local") {
      // This node's file loses to the head's directory.
      drop(plan.publish, file);
      if (!plan.restore.includes(file)) plan.restore.push(file);
      settle(file, "remote");
      plan.keep.push({ path: file, from: "local", reason: "conflict" });
    } else if (i.owns(file)) {
      // The head's file loses to this node's directory: publishing the path publishes its deletion.
      drop(plan.restore, file);
      if (!plan.publish.includes(file)) plan.publish.push(file);
      drop(plan.notOwned, file);
      settle(file, "local");
      plan.keep.push({ path: file, from: "remote", reason: "conflict" });
    } else {
      // Not ours to delete: this node's files under it lose instead.
      for (const q of under) {
        if (from(q) !== "local") continue;
        drop(plan.publish, q);
        if (!plan.restore.includes(q)) plan.restore.push(q);
        settle(q, "remote");
        plan.keep.push({ path: q, from: "local", reason: "conflict" });
      }
    }
  }
}

/**
 * What the puller is told the docroot holds before it applies the head: the base, except that a
 * path being published holds the head's version as far as the puller knows (it must not touch it)
 * and a path being restored holds something unknown (it must fetch, or delete, the head's version).
 */
export function heldForApply(base: ReadonlyMap<string, Entry>, remote: ReadonlyMap<string, Entry>, plan: SyncPlan): Map<string, Entry> {
  const held = new Map(base);
  for (const p of plan.publish) {
    const r = remote.get(p);
    if (r) held.set(p, r);
    else held.delete(p);
  }
  for (const p of plan.restore) held.set(p, { ...(remote.get(p) ?? base.get(p) ?? { path: p, size: 0, mtimeMs: 0, mode: 0o644, etag: "" }), path: p, sha256: UNKNOWN_SHA256 });
  return held;
}

/** What applying the head does to the docroot, beside what the node publishes. */
export interface ApplyPlan {
  /** Paths the head's version is written to (new or changed there, or restored here). */
  readonly fetch: readonly string[];
  /** Paths removed from the docroot (gone from the head, or restored to its absence). */
  readonly remove: readonly string[];
}

/**
 * What a round's apply changes in the docroot (for `sync --dry-run`): the puller, told
 * {@link heldForApply}, fetches every path whose head version differs from what it is told is there
 * and removes what the head no longer has; paths being published are left alone.
 */
export function planApply(base: ReadonlyMap<string, FileFacts>, remote: ReadonlyMap<string, FileFacts>, plan: SyncPlan): ApplyPlan {
  const published = new Set(plan.publish);
  const restored = new Set(plan.restore);
  const fetch: string[] = [];
  const remove: string[] = [];
  for (const [p, r] of remote) if (!published.has(p) && (restored.has(p) || !sameFile(r, base.get(p)))) fetch.push(p);
  for (const p of new Set([...base.keys(), ...restored])) if (!published.has(p) && !remote.has(p)) remove.push(p);
  return { fetch: fetch.sort(compareUtf8), remove: remove.sort(compareUtf8) };
}

/** A content hash no file has: the puller replaces whatever is there. */
export const UNKNOWN_SHA256 = "0".repeat(64);

/** Another writer's generation applied to the docroot, with the paths it changed and deleted there. */
export interface Applied {
  readonly generation: number;
  readonly changed: readonly string[];
  readonly deleted: readonly string[];
}

/** An Applied, or undefined when it changed nothing. */
export function appliedOrNone(generation: number, changed: readonly string[], deleted: readonly string[]): Applied | undefined {
  return changed.length === 0 && deleted.length === 0 ? undefined : { generation, changed, deleted };
}

/** What bringing a docroot from the files `from` to the files `to` (generation `generation`) changed and deleted. */
export function appliedBetween(from: ReadonlyMap<string, FileFacts>, to: ReadonlyMap<string, FileFacts>, generation: number): Applied | undefined {
  const paths = localChanges(from, to);
  return appliedOrNone(generation, paths.filter((p) => to.has(p)), paths.filter((p) => !to.has(p)));
}

/**
 * Two applies in a row as one, for the later generation (a node that jumps generations runs one
 * hook with every path it changed): a path's last operation counts.
 */
export function mergeApplied(a: Applied | undefined, b: Applied | undefined): Applied | undefined {
  if (!a || !b) return a ?? b;
  const [changedA, deletedA, changedB, deletedB] = [a.changed, a.deleted, b.changed, b.deleted].map((l) => new Set(l)) as [Set<string>, Set<string>, Set<string>, Set<string>];
  return {
    generation: Math.max(a.generation, b.generation),
    changed: [...a.changed.filter((p) => !deletedB.has(p)), ...b.changed.filter((p) => !changedA.has(p))],
    deleted: [...a.deleted.filter((p) => !changedB.has(p)), ...b.deleted.filter((p) => !deletedA.has(p))],
  };
}
