/**
 * The simulation's hand on the writers' docroots: files written, deleted and turned from directory
 * into file (and back) under the master and the two-way writers, between and during their rounds.
 * Every version written is recorded with the checker (the only bytes any docroot may ever hold for
 * that path), and each two-way writer's last version of each path (which must end published or kept).
 */
import { lstatSync, mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";
import { sha256Hex } from "../src/core/manifest.ts";
import type { Checker } from "./checks.ts";
import type { Rng, Scheduler } from "./scheduler.ts";

// big.bin is over the simulation's multipart threshold (sim/world.ts SMALL_PARTS): a multipart ETag.
const POOL = ["index.html", "a.html", "b.txt", "css/site.css", "d/x.html", "d/y.html", "big.bin"];

interface Writer {
  readonly id: string;
  readonly docroot: string;
  readonly url: string;
  readonly flips: boolean;
  readonly sync: boolean;
  /** The last version the simulation wrote of each path (null: it deleted the path). */
  readonly last: Map<string, string | null>;
}

/** Writes into registered docroots, from the seed. */
export class DocrootWriter {
  private readonly writers: Writer[] = [];
  private n = 0;
  private readonly rng: Rng;
  private readonly sched: Scheduler;
  private readonly checker: Checker;

  constructor(rng: Rng, sched: Scheduler, checker: Checker) {
    this.rng = rng;
    this.sched = sched;
    this.checker = checker;
  }

  /** A docroot the simulation writes into, publishing to `url`. */
  register(id: string, docroot: string, url: string, o: { flips?: boolean; sync?: boolean } = {}): void {
    this.writers.push({ id, docroot, url, flips: o.flips ?? false, sync: o.sync ?? false, last: new Map() });
    // Every writer starts with a page, so a first push has something to publish.
    this.write(this.writers[this.writers.length - 1] as Writer, "index.html");
  }

  /** The last version the simulation wrote of each path in writer `id`'s docroot. */
  lastOf(id: string): ReadonlyMap<string, string | null> {
    return this.writers.find((w) => w.id === id)?.last ?? new Map();
  }

  /** One change in one writer's docroot: a write, a delete, or a directory ↔ file flip. */
  mutate(): void {
    if (this.writers.length === 0) return;
    const w = this.rng.pick(this.writers);
    const r = this.rng.next();
    if (r < 0.6) this.write(w, this.rng.pick(POOL));
    else if (r < 0.85) {
      const files = listFiles(w.docroot);
      if (files.length > 1) this.remove(w, this.rng.pick(files));
    } else if (w.flips) {
      const isDir = kind(path.join(w.docroot, "d")) === "dir";
      this.write(w, isDir ? "d" : `d/${this.rng.pick(["x.html", "new.html"])}`);
    }
  }

  private write(w: Writer, rel: string): void {
    const abs = path.join(w.docroot, rel);
    // Whatever stands in the way goes: a file where a directory must be, a directory where the file goes.
    const parts = rel.split("/");
    for (let i = 1; i < parts.length; i++) {
      const p = parts.slice(0, i).join("/");
      if (kind(path.join(w.docroot, p)) === "file") this.remove(w, p);
    }
    if (kind(abs) === "dir") for (const f of listFiles(abs)) this.remove(w, `${rel}/${f}`);
    rmSync(abs, { recursive: true, force: true });
    mkdirSync(path.dirname(abs), { recursive: true });
    const pad = rel === "big.bin" ? 2048 + this.rng.int(2048) : this.rng.int(40);
    const body = `${w.id} ${rel} #${this.n++} ${"x".repeat(pad)}\n`;
    writeFileSync(abs, body);
    // Strictly increasing mtimes on the virtual clock: "newer wins" is the seed's, never a tie.
    const t = (this.sched.vnow + this.n) / 1000;
    utimesSync(abs, t, t);
    const sha = sha256Hex(body);
    this.checker.wrote(w.url, rel, sha);
    w.last.set(rel, sha);
  }

  private remove(w: Writer, rel: string): void {
    rmSync(path.join(w.docroot, rel), { recursive: true, force: true });
    w.last.set(rel, null);
  }
}

function kind(abs: string): "file" | "dir" | undefined {
  try {
    const st = lstatSync(abs);
    return st.isDirectory() ? "dir" : "file";
  } catch {
    return undefined;
  }
}

/** Relative paths of the files under `dir`. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path.join(d, e.name), r);
      else out.push(r);
    }
  };
  walk(dir, "");
  return out.sort();
}
