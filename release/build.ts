/**
 * `npm run release`: for linux-x64 and linux-arm64, a single executable and a .deb; and the npm
 * tarball. Everything goes to out/release/ (git-ignored) with a manifest.json the tests read;
 * downloaded node binaries stay in a cache outside the clone (release/node-runtime.ts).
 *
 *   node release/build.ts              build everything
 *   node release/build.ts --if-stale   build only if the sources changed since the last build
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { bundleCli } from "./bundle.ts";
import { buildDeb } from "./deb.ts";
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
  /** dpkg-deb's compressor (xz unless FANSYNC_DEB_COMPRESSION said otherwise). */
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
  // published (artifacts, manifest.json, SHA256SUMS) and nothing else.
  const work = path.join(releaseCacheDir(), "work");
  await rm(OUT_DIR, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
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
  const manifest: ReleaseManifest = { version, nodeVersion: NODE_VERSION, sourceHash: hash, bundleBytes: bundle.bytes, debCompression: process.env.FANSYNC_DEB_COMPRESSION ?? "xz", artifacts, workDir: work };
  await writeFile(path.join(OUT_DIR, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  // Beside the artifacts, in sha256sum's format: `sha256sum -c SHA256SUMS` checks a download.
  const sums = await Promise.all(artifacts.map(async (a) => `${createHash("sha256").update(await readFile(path.join(OUT_DIR, a.file))).digest("hex")}  ${a.file}\n`));
  await writeFile(path.join(OUT_DIR, "SHA256SUMS"), sums.join(""));
  return manifest;
}

/** True when the last build's manifest matches the sources and its files are all there. */
async function upToDate(): Promise<ReleaseManifest | undefined> {
  const m = await readReleaseManifest();
  if (!m || m.sourceHash !== (await sourceHash()) || m.debCompression !== (process.env.FANSYNC_DEB_COMPRESSION ?? "xz")) return undefined;
  for (const a of m.artifacts) if (!(await stat(path.join(OUT_DIR, a.file)).catch(() => undefined))) return undefined;
  return m;
}

if (import.meta.main) {
  const ifStale = process.argv.includes("--if-stale");
  const t0 = Date.now();
  const fresh = ifStale ? await upToDate() : undefined;
  if (fresh) console.log("release artifacts are up to date with the sources");
  const m = fresh ?? (await buildRelease());
  printSizes(m);
  if (!fresh) console.log(`built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
