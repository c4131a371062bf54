/**
 * `npm run release`: for linux-x64 and linux-arm64, a single executable and a .deb; and the npm
 * tarball. Everything goes to out/release/ (git-ignored) with a manifest.json the tests read;
 * downloaded node binaries stay in a cache outside the clone (release/node-runtime.ts).
 *
 *   node release/build.ts              build everything
 *   node release/build.ts --if-stale   build only if the sources changed since the last build
 *
 * Every build is also kept in the release cache under a key made of its inputs (the sources, the
 * .deb compression, the Node release inside): with --if-stale a clone whose out/release is missing
 * or stale takes a cached build of the same inputs instead of building (a second CI run on the same
 * machine, another worktree). The newest few builds are kept.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { bundleCli } from "./bundle.ts";
import { buildDeb, debCompression } from "./deb.ts";
import { nodeRuntime, releaseCacheDir } from "./node-runtime.ts";
import { artifactNames, NODE_VERSION, type Platform, PLATFORMS } from "./platforms.ts";
import { checkSea, injectSea, writeSeaBlob } from "./sea.ts";

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, "..");
/** Where the artifacts go. */
export const OUT_DIR = path.join(ROOT, "out", "release");

/** One built file. */
export interface Artifact {
  readonly kind: "binary" | "deb" | "npm";
  readonly arch: Platform["arch"] | "any";
  readonly file: string;
  readonly bytes: number;
}

/** out/release/manifest.json: what was built from which sources. */
export interface ReleaseManifest {
  readonly version: string;
  readonly nodeVersion: string;
  readonly sourceHash: string;
  readonly bundleBytes: number;
  /** dpkg-deb's compressor and level (debCompression()). */
  readonly debCompression: string;
  readonly artifacts: readonly Artifact[];
  /** Where the intermediates (the bundle, the SEA blob) were left, outside out/release. */
  readonly workDir: string;
}

// What the artifacts are made of: a change here means a rebuild.
const SOURCES = ["src", "bin", "release", "infra/systemd", "infra/config", "infra/cron", "infra/logrotate", "infra/iam", "docs", "README.md", "package.json", "package-lock.json"];

/** sha256 over the paths and contents of everything the artifacts are built from. */
export async function sourceHash(root = ROOT): Promise<string> {
  const h = createHash("sha256");
  const files: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const st = await stat(path.join(root, rel)).catch(() => undefined);
    if (!st) return;
    if (st.isFile()) files.push(rel);
    else if (st.isDirectory()) for (const e of await readdir(path.join(root, rel))) await walk(path.posix.join(rel, e));
  };
  for (const s of SOURCES) await walk(s);
  for (const f of files.sort()) h.update(`${f}\0`).update(await readFile(path.join(root, f))).update("\0");
  return h.digest("hex");
}

/** The release cache's key for a build: its sources, the .deb compression and the Node release inside. */
export function buildKey(hash: string, compression = debCompression().label): string {
  return createHash("sha256").update(`${hash}\0${compression}\0${NODE_VERSION}`).digest("hex").slice(0, 32);
}

/** Where a build of `key` is kept: out/ (what out/release holds) and work/ (the intermediates). */
export function cachedBuildDir(key: string): string {
  return path.join(releaseCacheDir(), "builds", key);
}

// Each build is about 0.4 GB; keep the newest few (worktrees of one machine share the cache).
const KEEP_BUILDS = 3;

/** Copy every file of `from` into `to` (a clone where the filesystem can, else a copy). */
async function copyFlat(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const f of await readdir(from)) await copyFile(path.join(from, f), path.join(to, f), constants.COPYFILE_FICLONE);
}

/** Keep the build just made in the cache (out/release and its work dir), then drop the oldest beyond KEEP_BUILDS. */
async function keepBuild(key: string, staging: string): Promise<void> {
  const dir = cachedBuildDir(key);
  await copyFlat(OUT_DIR, path.join(staging, "out"));
  await rm(dir, { recursive: true, force: true });
  await rename(staging, dir).catch(async () => rm(staging, { recursive: true, force: true })); // another build of the same key won
  const root = path.dirname(dir);
  const builds = await Promise.all((await readdir(root)).filter((d) => !d.includes(".")).map(async (d) => ({ d, t: (await stat(path.join(root, d))).mtimeMs })));
  for (const { d } of builds.sort((a, b) => b.t - a.t).slice(KEEP_BUILDS)) await rm(path.join(root, d), { recursive: true, force: true });
}

/** `outDir` (out/release) from the cached build of these sources, if there is a complete one; else undefined. */
export async function restoreBuild(hash: string, outDir = OUT_DIR): Promise<ReleaseManifest | undefined> {
  const dir = cachedBuildDir(buildKey(hash));
  const m = await readReleaseManifest(path.join(dir, "out"));
  if (!m || m.sourceHash !== hash || m.debCompression !== debCompression().label || !(await complete(m, path.join(dir, "out")))) return undefined;
  await rm(outDir, { recursive: true, force: true });
  await copyFlat(path.join(dir, "out"), outDir);
  const now = new Date();
  await utimes(dir, now, now); // the newest use is kept longest
  return m;
}

/** Every artifact of `m` is in `dir` with its size, and the intermediates the release tests read are there. */
async function complete(m: ReleaseManifest, dir: string): Promise<boolean> {
  for (const a of m.artifacts) if ((await stat(path.join(dir, a.file)).catch(() => undefined))?.size !== a.bytes) return false;
  for (const f of ["fansync.cjs", "fansync.blob"]) if (!(await stat(path.join(m.workDir, f)).catch(() => undefined))) return false;
  return true;
}

/** Read the manifest of the last build, if any. */
export async function readReleaseManifest(outDir = OUT_DIR): Promise<ReleaseManifest | undefined> {
  try {
    return JSON.parse(await readFile(path.join(outDir, "manifest.json"), "utf8")) as ReleaseManifest;
  } catch {
    return undefined;
  }
}

/** name, version and licence of every npm package with a file in the bundle. */
async function bundledPackages(inputs: readonly string[]): Promise<{ name: string; version: string; license: string }[]> {
  const dirs = new Set<string>();
  for (const i of inputs) {
    const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(i);
    if (m) dirs.add(m[1] as string);
  }
  const out = new Map<string, { name: string; version: string; license: string }>();
  for (const d of [...dirs].sort()) {
    const pj = JSON.parse(await readFile(path.join(ROOT, d, "package.json"), "utf8")) as { name: string; version: string; license?: string };
    out.set(`${pj.name}@${pj.version}`, { name: pj.name, version: pj.version, license: pj.license ?? "see its package" });
  }
  return [...out.values()];
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** Print the artifacts with their sizes. */
export function printSizes(m: ReleaseManifest): void {
  console.log(`\nfansync ${m.version} (Node.js ${m.nodeVersion} inside the executables; bundle ${mb(m.bundleBytes)}) in ${path.relative(process.cwd(), OUT_DIR) || "."}:`);
  for (const a of m.artifacts) console.log(`  ${a.file.padEnd(36)} ${String(a.bytes).padStart(11)} bytes  ${mb(a.bytes).padStart(9)}`);
}

async function step<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const r = await f();
  console.log(`  ${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  return r;
}

/**
 * The commit built from and the build date for `fansync version`: the date is SOURCE_DATE_EPOCH
 * when set (reproducible builds), else now; the commit "unknown" outside a git checkout.
 */
async function buildStamp(): Promise<{ commit: string; buildDate: string }> {
  const epoch = Number(process.env.SOURCE_DATE_EPOCH);
  const buildDate = (Number.isFinite(epoch) && epoch > 0 ? new Date(epoch * 1000) : new Date()).toISOString().replace(/\.\d{3}Z$/, "Z");
  const commit = await run("git", ["-C", ROOT, "rev-parse", "--short=12", "HEAD"]).then((r) => r.stdout.trim(), () => "unknown");
  return { commit, buildDate };
}

/** Build every artifact; returns the manifest written to out/release/manifest.json. */
export async function buildRelease(): Promise<ReleaseManifest> {
  const pkg = JSON.parse(await readFile(path.join(ROOT, "package.json"), "utf8")) as { version: string };
  const version = pkg.version;
  const hash = await sourceHash();
  // Intermediates go to the release cache, not out/release: that directory holds what is
  // published (artifacts, manifest.json, SHA256SUMS) and nothing else. They are made in a staging
  // directory that becomes this build's cache entry at the end (keepBuild), where the manifest's
  // workDir points.
  const key = buildKey(hash);
  const staging = `${cachedBuildDir(key)}.${process.pid}`;
  const work = path.join(staging, "work");
  await rm(OUT_DIR, { recursive: true, force: true });
  await rm(staging, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  await mkdir(OUT_DIR, { recursive: true });
  console.log(`building fansync ${version} for ${PLATFORMS.map((p) => `linux-${p.arch}`).join(", ")}`);

  const stamp = await buildStamp();
  const bundle = await step("bundle (esbuild)", () => bundleCli({ root: ROOT, version, ...stamp, outFile: path.join(work, "fansync.cjs") }));
  const bundled = await bundledPackages(bundle.inputs);
  // The manual page and completions, from the bundle's own commander definitions (any arch's .deb).
  const printed = async (...args: string[]) => (await run(process.execPath, [bundle.file, ...args], { maxBuffer: 16 << 20 })).stdout;
  const docs = { manpage: await printed("manpage"), bash: await printed("completion", "bash"), zsh: await printed("completion", "zsh") };
  // The blob is made by the same Node release the executables carry, on this host's CPU.
  const host = PLATFORMS.find((p) => p.arch === process.arch);
  if (!host) throw new Error(`the release builds on linux-x64 or linux-arm64 hosts, not ${process.platform}-${process.arch}`);
  const blob = path.join(work, "fansync.blob");
  await step("single-executable blob", async () => writeSeaBlob({ node: (await nodeRuntime(host)).bin, bundle: bundle.file, blob }));

  const artifacts: Artifact[] = [];
  const size = async (file: string) => (await stat(path.join(OUT_DIR, file))).size;
  for (const p of PLATFORMS) {
    const runtime = await step(`node ${NODE_VERSION} linux-${p.arch} (cached)`, () => nodeRuntime(p));
    const file = artifactNames.binary(version, p);
    const bin = path.join(OUT_DIR, file);
    await step(`${file} (postject)`, () => injectSea({ node: runtime.bin, blob, out: bin }));
    const check = await checkSea(bin, blob, p);
    if (!check.machineOk || !check.fuseFlipped || !check.blobPresent) throw new Error(`${file} failed its checks: ${JSON.stringify(check)}`);
    if (p.arch === process.arch) {
      const { stdout } = await run(bin, ["--version"], { env: { PATH: "/nonexistent" } });
      if (stdout.trim() !== version) throw new Error(`${file} --version printed ${JSON.stringify(stdout)}, expected ${version}`);
    }
    artifacts.push({ kind: "binary", arch: p.arch, file, bytes: await size(file) });
    const deb = artifactNames.deb(version, p);
    await step(`${deb} (dpkg-deb)`, () => buildDeb({
      root: ROOT, version, platform: p, binary: bin, nodeLicense: runtime.license, bundled,
      staging: path.join(work, `deb-${p.arch}`), out: path.join(OUT_DIR, deb), docs, buildDate: new Date(stamp.buildDate),
    }));
    await rm(path.join(work, `deb-${p.arch}`), { recursive: true, force: true });
    artifacts.push({ kind: "deb", arch: p.arch, file: deb, bytes: await size(deb) });
  }
  const tgz = await step("npm pack", async () => {
    const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", OUT_DIR], { cwd: ROOT, maxBuffer: 64 << 20 });
    return (JSON.parse(stdout) as { filename: string }[])[0]?.filename;
  });
  if (tgz !== artifactNames.npm(version)) throw new Error(`npm pack wrote ${tgz}, expected ${artifactNames.npm(version)}`);
  artifacts.push({ kind: "npm", arch: "any", file: tgz, bytes: await size(tgz) });
  const manifest: ReleaseManifest = { version, nodeVersion: NODE_VERSION, sourceHash: hash, bundleBytes: bundle.bytes, debCompression: debCompression().label, artifacts, workDir: path.join(cachedBuildDir(key), "work") };
  await writeFile(path.join(OUT_DIR, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  // Beside the artifacts, in sha256sum's format: `sha256sum -c SHA256SUMS` checks a download.
  const sums = await Promise.all(artifacts.map(async (a) => `${createHash("sha256").update(await readFile(path.join(OUT_DIR, a.file))).digest("hex")}  ${a.file}\n`));
  await writeFile(path.join(OUT_DIR, "SHA256SUMS"), sums.join(""));
  await keepBuild(key, staging);
  return manifest;
}

/** The last build's manifest when it matches the sources and its files are all there. */
async function upToDate(hash: string): Promise<ReleaseManifest | undefined> {
  const m = await readReleaseManifest();
  if (!m || m.sourceHash !== hash || m.debCompression !== debCompression().label) return undefined;
  return (await complete(m, OUT_DIR)) ? m : undefined;
}

if (import.meta.main) {
  const ifStale = process.argv.includes("--if-stale");
  const t0 = Date.now();
  const hash = ifStale ? await sourceHash() : "";
  let fresh = ifStale ? await upToDate(hash) : undefined;
  if (fresh) console.log("release artifacts are up to date with the sources");
  else if (ifStale && (fresh = await restoreBuild(hash))) console.log(`release artifacts taken from the cache (${cachedBuildDir(buildKey(hash))}): built before from the same sources`);
  const m = fresh ?? (await buildRelease());
  printSizes(m);
  if (!fresh) console.log(`built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
