#!/usr/bin/env -S node --max-semi-space-size=8 --heap-growing-percent=50
// Thin launcher: the compiled entry point does all the work (npm run build / prepare emits dist/).
// --max-semi-space-size: Node 24's default young generation lets a busy transfer grow to ~300 MB of
// RSS with under 100 MB live; 8 MB semi-spaces cap that (bench/RESULTS.md). It once cost 0.9-1.4 s
// of GC per 10k files pushed; since transfers allocate far less (issue 14: reused read buffers, the
// lean data path) it costs nothing measurable: 10k push + pull, GC 413 + 364 ms without it, 430 +
// 281 ms with it, and peak RSS 181-198 MiB without it against 133-145 MiB with it (push).
// --heap-growing-percent=50: after each full GC the old generation may grow to 1.5x what survived,
// not the 2-4x V8 allows a small heap by default. Request objects that outlive two scavenges (16
// transfers in flight) pile up there as garbage: a 10k push held 31 MB live but reached 81 MB of
// old space, a 100k push 48 MB live and 162 MB (issue 25). With it, peak RSS of a 10k push and
// pull went from 182-190 MiB to 134-148 MiB (bench/lib/profile.ts), for more full GCs: GC pauses
// of a 10k push + pull summed 1.3 s without it and 2.1 s with it on a loaded machine (to be
// confirmed idle; dropping this flag alone undoes it).
// The compile cache keeps V8's bytecode on disk, so a cron-driven no-op pull does not re-parse the
// AWS SDK every minute (Node >= 22.1; silently unavailable elsewhere).
//
// This file must parse and run on any Node a host may have (the units and cron find whatever `node`
// is on PATH), so it checks the version before it loads anything that needs Node >= 22: an older
// Node gets one clear line and exit 2 (usage: the wrong runtime), not a half-working run.
import module from "node:module";

/** The oldest Node major fansync supports (package.json "engines"; a unit test keeps them equal). */
const MIN_NODE_MAJOR = 22;

const major = Number(process.versions.node.split(".")[0]);
if (!(major >= MIN_NODE_MAJOR)) {
  process.stderr.write(
    `fansync: Node.js ${process.versions.node} (${process.execPath}) is too old: fansync needs Node.js ${MIN_NODE_MAJOR} or newer.\n` +
      "  what to do: install Node.js 22 or 24 first on PATH, or use the release's single executable (or .deb), which carries its own Node.js\n",
  );
  process.exit(2);
}

module.enableCompileCache?.();
await import("../dist/cli/main.js");
