/** A small generated site and seeded edits to it, for the fault suite's many short runs. */
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { seededBytes, snapshot } from "./tree.ts";
import type { rng } from "./faults.ts";

type Rng = ReturnType<typeof rng>;

/** Write an initial site of `n` files (a few directories, sizes 0..`maxSize`). */
export async function writeSite(root: string, r: Rng, n: number, maxSize = 24 * 1024): Promise<void> {
  for (let i = 0; i < n; i++) await putFile(root, `d${i % 4}/f${i}.html`, r, maxSize);
}

async function putFile(root: string, rel: string, r: Rng, maxSize: number): Promise<void> {
  const abs = path.join(root, rel);
  await mkdir(path.dirname(abs), { recursive: true });
  await writeFile(abs, seededBytes(r.int(1, 1e9), r.int(0, maxSize)));
}

/** A seeded edit: modify some files, add one, delete one (never emptying the site). */
export async function editSite(root: string, r: Rng, maxSize = 24 * 1024): Promise<void> {
  const files = [...(await snapshot(root)).keys()];
  for (let i = 0; i < 2 && files.length; i++) await putFile(root, r.pick(files), r, maxSize);
  await putFile(root, `d${r.int(0, 5)}/n${r.int(0, 1e6)}.html`, r, maxSize);
  if (files.length > 4) await rm(path.join(root, r.pick(files)), { force: true });
}
