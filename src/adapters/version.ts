/**
 * fansync's own version and build, read once (reports, metrics, `--version` and `fansync version`
 * agree). From a source tree: package.json and the checkout's git HEAD; in a release the build
 * replaces this file with constants (release/bundle.ts), since the executable has neither.
 */
import { readFileSync, statSync } from "node:fs";

/** What `fansync version` and `fansync_build_info` say about this build. */
export interface BuildInfo {
  readonly version: string;
  /** The git commit built from ("unknown" outside a checkout). */
  readonly commit: string;
  /** When the release was built (ISO 8601); "unknown" when run from a source tree. */
  readonly buildDate: string;
}

/** The version string of this fansync install. */
export const FANSYNC_VERSION: string = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

/** This build. */
export const BUILD_INFO: BuildInfo = { version: FANSYNC_VERSION, commit: readGitCommit(), buildDate: "unknown" };

// A checkout's HEAD: a commit id, or a ref whose file (or packed-refs line) holds it. A worktree's
// .git is a file naming its git directory. Anything unexpected is "unknown", never an error.
function readGitCommit(): string {
  try {
    const root = new URL("../../", import.meta.url);
    const dotGit = new URL(".git", root);
    const gitDir = statSync(dotGit).isDirectory() ? new URL(".git/", root) : new URL(`file://${readFileSync(dotGit, "utf8").trim().replace(/^gitdir: /, "").replace(/\/?$/, "/")}`);
    return commitOf(gitDir);
  } catch {
    return "unknown";
  }
}

function commitOf(gitDir: URL): string {
  const head = readFileSync(new URL("HEAD", gitDir), "utf8").trim();
  if (!head.startsWith("ref: ")) return head.slice(0, 12);
  const ref = head.slice(5);
  // A linked worktree keeps its HEAD apart but its refs in the common directory.
  const common = (() => {
    try {
      return new URL(`${readFileSync(new URL("commondir", gitDir), "utf8").trim().replace(/\/?$/, "/")}`, gitDir);
    } catch {
      return gitDir;
    }
  })();
  for (const dir of [gitDir, common]) {
    try {
      return readFileSync(new URL(ref, dir), "utf8").trim().slice(0, 12);
    } catch {
      // next
    }
  }
  const packed = readFileSync(new URL("packed-refs", common), "utf8").split("\n").find((l) => l.endsWith(` ${ref}`));
  return packed ? packed.slice(0, 12) : "unknown";
}

/** `fansync version`: like `rclone version`, one fact a line. */
export function formatVersion(b: BuildInfo): string {
  return `fansync ${b.version}\n- commit: ${b.commit}\n- build date: ${b.buildDate}\n- node: ${process.version}\n- platform: ${process.platform}/${process.arch}\n`;
}
