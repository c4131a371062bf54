#!/usr/bin/env -S node --max-semi-space-size=8
// Thin launcher: the compiled entry point does all the work (npm run build / prepare emits dist/).
// --max-semi-space-size: Node 24's default young generation lets a busy transfer grow to ~300 MB of
// RSS with under 100 MB live; 8 MB semi-spaces cost no measurable time and cap that (bench/RESULTS.md).
// The compile cache keeps V8's bytecode on disk, so a cron-driven no-op pull does not re-parse the
// AWS SDK every minute (Node >= 22.1; silently unavailable elsewhere).
import module from "node:module";

module.enableCompileCache?.();
await import("../dist/cli/main.js");
