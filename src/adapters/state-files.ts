/** Small durable files in the state directory: atomic JSON writes and NDJSON maps. */
import { randomBytes } from "node:crypto";
import { closeSync, createReadStream, mkdirSync, openSync, writeSync } from "node:fs";
import { appendFile, mkdir, open, readFile, rename } from "node:fs/promises";
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

/**
 * Write a map as NDJSON (one `[key, value]` per line): cheap to write and read at 1M entries.
 * Atomic (temp file, fsync, rename) and streamed: lines go out a batch at a time, so the whole
 * text (~200 MB at 1M entries) is never held.
 */
export async function writeNdjsonMap<V>(file: string, map: ReadonlyMap<string, V>): Promise<void> {
  await writeLinesAtomic(file, (function* () {
    for (const [k, v] of map) yield JSON.stringify([k, v]);
  })());
}

/** Write `lines` (each without its newline) to `file` atomically, a batch at a time. */
export async function writeLinesAtomic(file: string, lines: Iterable<string>): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${randomBytes(4).toString("hex")}`;
  const fh = await open(tmp, "w", 0o644);
  try {
    let batch = "";
    for (const line of lines) {
      batch += line + "\n";
      if (batch.length >= 1024 * 1024) {
        await fh.write(batch);
        batch = "";
      }
    }
    if (batch !== "") await fh.write(batch);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}

/**
 * Read an NDJSON map; empty when the file is missing or damaged (the caller then rebuilds).
 * Streamed: one chunk of text at a time, not the whole file as one string.
 */
export async function readNdjsonMap<V>(file: string, opts: { tornTail?: boolean } = {}): Promise<Map<string, V>> {
  const map = new Map<string, V>();
  return (await readNdjsonLines<V>(file, (k, v) => map.set(k, v), opts)) ? map : new Map();
}

/**
 * Hand each `[key, value]` line of an NDJSON map file to `each`, streamed (the compact stores that
 * keep their own layout never hold the parsed map). False when the file is missing or damaged:
 * what `each` was given so far is then to be dropped (the caller rebuilds).
 */
export async function readNdjsonLines<V>(file: string, each: (key: string, value: V) => void, opts: { tornTail?: boolean } = {}): Promise<boolean> {
  const read = await readLines(file, (line, tail) => {
    let kv: unknown;
    try {
      kv = JSON.parse(line);
    } catch (err) {
      // An appended file (NdjsonAppender) whose writer was killed mid-line: only that line is lost.
      if (tail && opts.tornTail) return;
      throw err;
    }
    const [k, v] = kv as [string, V];
    each(k, v);
  });
  return read === true;
}

/**
 * Write `{ "<field>": [items…] }` atomically, an item per line, streamed (the keys of a first
 * push of 1M files are never one string).
 */
export async function writeJsonListAtomic(file: string, field: string, items: Iterable<unknown>): Promise<void> {
  await writeLinesAtomic(file, (function* () {
    yield `{${JSON.stringify(field)}:[`;
    let first = true;
    for (const item of items) {
      yield `${first ? "" : ","}${JSON.stringify(item)}`;
      first = false;
    }
    yield "]}";
  })());
}

/**
 * Read back what {@link writeJsonListAtomic} wrote, handing each item of `field` to `each` as its
 * line is read: the keys of a first push of 1M files are never one string, nor one array. A file in
 * another layout (one line, as older versions wrote it) is parsed whole. False when the file is
 * missing or damaged (treated as absent, like {@link readJson}): what `each` got is then to be dropped.
 */
export async function readJsonList(file: string, field: string, each: (item: unknown) => void): Promise<boolean> {
  const open = `{${JSON.stringify(field)}:[`;
  let first: boolean | undefined;
  let closed = false;
  const ok = await readLines(file, (line) => {
    if (first === undefined) {
      first = line === open;
      if (!first) throw new SyntaxError("not one item per line");
      return;
    }
    if (closed) throw new SyntaxError("text after the list");
    if (line === "]}") closed = true;
    else each(JSON.parse(line.startsWith(",") ? line.slice(1) : line));
  });
  if (ok && first && closed) return true;
  if (ok === undefined || first !== false) return false;
  // Another layout: the whole document.
  const doc = await readJson<Record<string, unknown>>(file);
  const items = doc?.[field];
  if (!Array.isArray(items)) return false;
  for (const item of items) each(item);
  return true;
}

// Each line of `file` (without its newline; `tail`: the last one, which has none), streamed. True
// when read whole; false when damaged (a line `each` refused with a SyntaxError or TypeError);
// undefined when missing.
async function readLines(file: string, each: (line: string, tail: boolean) => void): Promise<boolean | undefined> {
  let rest = "";
  try {
    for await (const chunk of createReadStream(file, { encoding: "utf8", highWaterMark: 1024 * 1024 })) {
      const text = rest + (chunk as string);
      let start = 0;
      for (let nl = text.indexOf("\n"); nl !== -1; nl = text.indexOf("\n", start)) {
        if (nl > start) each(text.slice(start, nl), false);
        start = nl + 1;
      }
      rest = text.slice(start);
    }
    if (rest !== "") each(rest, true);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    if (err instanceof SyntaxError || err instanceof TypeError) return false;
    throw err;
  }
  return true;
}

/** Write a JSON document atomically. */
export async function writeJson(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value));
}

/**
 * Appends `[key, value]` lines to an NDJSON map file (read back with {@link readNdjsonMap} and
 * `tornTail`: the last line of a key wins) a batch at a time: after `batch` lines, or `delayMs` after
 * the first one buffered. A process killed between flushes loses at most that batch; for the records
 * of work done (what a killed run wrote or staged), losing one only costs doing it again.
 *
 * Each flush is one synchronous write to a descriptor kept open (a few microseconds): queued
 * asynchronous appends (open, write, close on the thread pool) fell behind a busy transfer loop,
 * and a SIGKILL then lost a hundred records instead of a dozen.
 */
export class NdjsonAppender<V> {
  private readonly file: string;
  private pending: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private fd: number | undefined;
  private readonly batch: number;
  private readonly delayMs: number;

  constructor(file: string, opts: { batch?: number; delayMs?: number } = {}) {
    this.file = file;
    this.batch = opts.batch ?? 64;
    this.delayMs = opts.delayMs ?? 250;
  }

  /** Buffer one line. */
  add(key: string, value: V): void {
    this.pending.push(JSON.stringify([key, value]));
    if (this.pending.length >= this.batch) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.delayMs).unref();
  }

  /** Append what is buffered; a failed write is dropped (see the class comment). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0) return;
    const text = this.pending.join("\n") + "\n";
    this.pending = [];
    try {
      if (this.fd === undefined) {
        mkdirSync(path.dirname(this.file), { recursive: true });
        this.fd = openSync(this.file, "a", 0o644);
      }
      writeSync(this.fd, text);
    } catch {
      // Only a record lost: the work it describes is done again.
    }
  }

  /** Drop what is buffered and close the file (before it is removed or rewritten: the next line opens it anew). */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = [];
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
