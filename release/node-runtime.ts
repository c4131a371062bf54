/**
 * The official node binary for a platform, taken from the npm registry's node-linux-<arch> package
 * with `npm pack` (no install, so an arm64 package fetches fine on an x64 host) and kept in a cache
 * outside the clone: a rebuild, or CI on the same machine, downloads nothing.
 */
import { execFile } from "node:child_process";
import { access, mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { NODE_VERSION, type Platform } from "./platforms.ts";

const run = promisify(execFile);

/** The cache directory: $FANSYNC_RELEASE_CACHE, else $XDG_CACHE_HOME/fansync-release or ~/.cache/fansync-release. */
export function releaseCacheDir(): string {
  if (process.env.FANSYNC_RELEASE_CACHE) return path.resolve(process.env.FANSYNC_RELEASE_CACHE);
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".cache"), "fansync-release");
}

/** The cached node binary for `p` (of `version`, by default the one the release carries) and its licence file, fetched on first use. */
export async function nodeRuntime(p: Platform, version = NODE_VERSION): Promise<{ bin: string; license: string }> {
  const dir = path.join(releaseCacheDir(), `node-v${version}-linux-${p.arch}`);
  const found = { bin: path.join(dir, "bin", "node"), license: path.join(dir, "LICENSE") };
  if (await access(found.bin).then(() => true, () => false)) return found;
  await mkdir(releaseCacheDir(), { recursive: true });
  const tmp = await mkdtemp(path.join(releaseCacheDir(), `.fetch-${p.arch}-`));
  try {
    // npm pack checks the tarball against the registry's integrity hash.
    const { stdout } = await run("npm", ["pack", `${p.nodePackage}@${version}`, "--json", "--pack-destination", tmp], { cwd: tmp, maxBuffer: 16 << 20 });
    const [packed] = JSON.parse(stdout) as { filename: string }[];
    if (!packed) throw new Error(`npm pack ${p.nodePackage}@${version} returned nothing`);
    await run("tar", ["-xzf", path.join(tmp, packed.filename), "-C", tmp, "package/bin/node", "package/LICENSE"]);
    // Renamed into place whole: a crash mid-download never leaves a truncated binary in the cache.
    await rename(path.join(tmp, "package"), dir);
    return found;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
