/** Small durable files in the state directory: atomic JSON writes and NDJSON maps. */
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename } from "node:fs/promises";
import path from "node:path";

/** Write a file atomically: temp file in the same directory, fsync, rename. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${randomBytes(4).toString("hex")}`;
  const fh = await open(tmp, "w", 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}

/** Read a JSON file; undefined when it does not exist. A corrupt state file is treated as absent. */
export async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as T;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || err instanceof SyntaxError) return undefined;
    throw err;
  }
}

/** Write a map as NDJSON (one `[key, value]` per line): cheap to write and read at 1M entries. */
export async function writeNdjsonMap<V>(file: string, map: ReadonlyMap<string, V>): Promise<void> {
  const parts: string[] = [];
  for (const [k, v] of map) parts.push(JSON.stringify([k, v]));
  await writeFileAtomic(file, parts.join("\n") + (parts.length ? "\n" : ""));
}

/** Read an NDJSON map; empty when the file is missing or damaged (the caller then rebuilds). */
export async function readNdjsonMap<V>(file: string): Promise<Map<string, V>> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return new Map();
    throw err;
  }
  const map = new Map<string, V>();
  try {
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const [k, v] = JSON.parse(line) as [string, V];
      map.set(k, v);
    }
  } catch {
    return new Map();
  }
  return map;
}

/** Write a JSON document atomically. */
export async function writeJson(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value));
}
