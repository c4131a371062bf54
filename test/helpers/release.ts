/**
 * The artifacts `npm run release` built (out/release, described by its manifest.json). The release
 * tests use them as they are; test/run.sh builds them first when the sources changed
 * (`node release/build.ts --if-stale`), so a stale or missing build is an error here, not a rebuild.
 */
import path from "node:path";
import { OUT_DIR, readReleaseManifest, type ReleaseManifest, sourceHash } from "../../release/build.ts";
import { artifactNames, type Platform, PLATFORMS } from "../../release/platforms.ts";

/** Paths of the built artifacts. */
export interface Release {
  readonly manifest: ReleaseManifest;
  readonly dir: string;
  readonly version: string;
  binary(p: Platform): string;
  deb(p: Platform): string;
  readonly npm: string;
  /** The platform of this machine (the binary that can run here). */
  readonly host: Platform;
}

/** Load the release built from the current sources; throws saying how to build it otherwise. */
export async function loadRelease(): Promise<Release> {
  const manifest = await readReleaseManifest();
  if (!manifest) throw new Error(`no release build in ${OUT_DIR}: run \`npm run release\` (test/run.sh does it before the release tests)`);
  if (manifest.sourceHash !== (await sourceHash())) {
    throw new Error(`the release build in ${OUT_DIR} is older than the sources: run \`npm run release\` (or \`node release/build.ts --if-stale\`)`);
  }
  const host = PLATFORMS.find((p) => p.arch === process.arch);
  if (!host) throw new Error(`no release platform for ${process.arch}`);
  const v = manifest.version;
  return {
    manifest,
    dir: OUT_DIR,
    version: v,
    binary: (p) => path.join(OUT_DIR, artifactNames.binary(v, p)),
    deb: (p) => path.join(OUT_DIR, artifactNames.deb(v, p)),
    npm: path.join(OUT_DIR, artifactNames.npm(v)),
    host,
  };
}
