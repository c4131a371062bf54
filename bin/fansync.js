#!/usr/bin/env node
// Thin launcher: the compiled entry point does all the work (npm run build / prepare emits dist/).
import "../dist/cli/main.js";
