#!/usr/bin/env node
// Thin launcher: the compiled entry point does all the work (npm run build / prepare emits dist/).
// The compile cache keeps V8's bytecode on disk, so a cron-driven no-op pull does not re-parse the
// AWS SDK every minute (Node >= 22.1; silently unavailable elsewhere).
import module from "node:module";

module.enableCompileCache?.();
await import("../dist/cli/main.js");
