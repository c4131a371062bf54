// Checks that a downloaded tree is complete: the benchmark must not praise a tool that is fast
// because it skipped files (fauxqs listings can drop keys; rclone can merge NFC/NFD twins).
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import type { TreeEntry } from "./tree.ts";

/** How a tree on disk compares with the expected listing. */
export type TreeCheck = { expected: number; present: number; wrongSize: number; extra: number };

/** Pure comparison of an expected listing with what was found (path → size). */
export function compareListing(expected: readonly TreeEntry[], found: ReadonlyMap<string, number>): TreeCheck {
  let present = 0;
  let wrongSize = 0;
  const want = new Set<string>();
  for (const e of expected) {
    want.add(e.path);
    const size = found.get(e.path);
    if (size === undefined) continue;
    if (size === e.size) present++;
    else wrongSize++;
  }
  let extra = 0;
  for (const p of found.keys()) if (!want.has(p)) extra++;
  return { expected: expected.length, present, wrongSize, extra };
}

/** Every regular file under `root`, as POSIX relative path → size. */
export function readTreeSizes(root: string): Map<string, number> {
  const out = new Map<string, number>();
  let list: string[];
  try {
    list = readdirSync(root, { recursive: true, encoding: "utf8" });
  } catch {
    return out;
  }
  for (const rel of list) {
    const full = join(root, rel);
    try {
      const st = statSync(full);
      if (st.isFile()) out.set(relative(root, full).split("\\").join("/"), st.size);
    } catch {
      // A file that vanished while walking does not count.
    }
  }
  return out;
}

/** "" when the tree matches, otherwise a short note such as "8 of 10,000 files missing". */
export function describeCheck(c: TreeCheck): string {
  const missing = c.expected - c.present - c.wrongSize;
  const parts: string[] = [];
  if (missing > 0) parts.push(`${missing.toLocaleString("en-US")} of ${c.expected.toLocaleString("en-US")} files missing`);
  if (c.wrongSize > 0) parts.push(`${c.wrongSize.toLocaleString("en-US")} with the wrong size`);
  if (c.extra > 0) parts.push(`${c.extra.toLocaleString("en-US")} unexpected files`);
  return parts.join(", ");
}
