/**
 * The CLI as one CommonJS file for Node's single-executable support (which runs CommonJS only):
 * esbuild bundles src/cli/main.ts with every runtime dependency except the demo's S3 server.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { build, type BuildOptions, type Plugin } from "esbuild";

/** What {@link bundleCli} produced. */
export interface BundleResult {
  readonly file: string;
  readonly bytes: number;
  /** Every source file in the bundle, relative to the repository (esbuild's metafile inputs). */
  readonly inputs: readonly string[];
}

/** Packages that must never be in the bundle: the demo's embedded S3 server and its HTTP stack. */
export const EXCLUDED_PACKAGES = ["fauxqs", "fastify"] as const;

// In a CommonJS bundle `import.meta` is empty: give it the executable's own file URL, as a module
// loaded from there would see. (In a single executable __filename is the executable's path.)
const META_URL = "__fansyncImportMetaUrl";
const BANNER = `"use strict";\nconst ${META_URL} = require("node:url").pathToFileURL(__filename).href;`;

// logger.ts and progress-bar.ts load pino-pretty and cli-progress lazily through
// createRequire(import.meta.url). A bundler cannot follow that require, and the executable has no
// node_modules to find them in, so in the bundle the line goes and the bundler's own require takes
// over: the modules are bundled and still evaluated only on first use.
// What engine/transfer-threads.ts reads for the thread's script in a bundle (see bundleTransferThread).
const TRANSFER_THREAD_SOURCE = "globalThis.__fansyncTransferThreadSource";

const LAZY_REQUIRE_LINE = "const require = createRequire(import.meta.url);";

/**
 * src/adapters/version.ts reads package.json and the checkout's git HEAD at run time; the executable
 * has neither, so the build writes the version, commit and build date in as constants.
 */
function versionPlugin(root: string, build: { version: string; commit: string; buildDate: string }): Plugin {
  const file = path.join(root, "src", "adapters", "version.ts");
  return {
    name: "fansync-version",
    setup(b) {
      b.onLoad({ filter: /[\\/]src[\\/]adapters[\\/]version\.ts$/ }, async (args) => {
        if (args.path !== file) return undefined;
        const text = await readFile(file, "utf8");
        const lines = [/^export const FANSYNC_VERSION: string = .*$/m, /^export const BUILD_INFO: BuildInfo = .*$/m];
        if (!lines.every((re) => re.test(text))) throw new Error("release/bundle.ts: src/adapters/version.ts no longer has the FANSYNC_VERSION and BUILD_INFO lines it replaces");
        const contents = text
          .replace(lines[0] as RegExp, `export const FANSYNC_VERSION: string = ${JSON.stringify(build.version)}; // set by the release build`)
          .replace(lines[1] as RegExp, `export const BUILD_INFO: BuildInfo = ${JSON.stringify(build)}; // set by the release build`);
        return { contents, loader: "ts" };
      });
    },
  };
}

function lazyRequirePlugin(): Plugin {
  return {
    name: "fansync-lazy-require",
    setup(b) {
      b.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, async (args) => {
        const text = await readFile(args.path, "utf8");
        if (!text.includes(LAZY_REQUIRE_LINE)) return undefined;
        return { contents: text.replace(LAZY_REQUIRE_LINE, `// (release bundle: ${LAZY_REQUIRE_LINE} removed, see release/bundle.ts)`), loader: "ts" };
      });
    },
  };
}

/**
 * `import("fauxqs")` resolves to a module that fails like a missing package, so the demo's
 * "not part of a release" message appears and the executable never looks for a node_modules
 * next to itself.
 */
function noDemoServerPlugin(): Plugin {
  return {
    name: "fansync-no-demo-server",
    setup(b) {
      b.onResolve({ filter: /^fauxqs$/ }, () => ({ path: "fauxqs", namespace: "fansync-excluded" }));
      b.onLoad({ filter: /.*/, namespace: "fansync-excluded" }, () => ({
        contents: 'const e = new Error("the fauxqs package is not in this single executable"); e.code = "ERR_MODULE_NOT_FOUND"; throw e;',
        loader: "js",
      }));
    },
  };
}

/** What both bundles (the CLI's and its transfer thread's) are built with. */
function commonOptions(root: string): BuildOptions {
  return {
    absWorkingDir: root,
    bundle: true,
    platform: "node",
    target: "node24",
    format: "cjs",
    // Readable stack traces in operators' logs matter more than a smaller file.
    minify: false,
    sourcemap: false,
    legalComments: "inline",
    logLevel: "warning",
    banner: { js: BANNER },
  };
}

/**
 * The transfer thread's module (src/engine/transfer-thread.ts) as one CommonJS script: a single
 * executable has no module file to start a worker from, so the CLI's bundle carries this text
 * and starts each thread from it (`new Worker(text, { eval: true })`, engine/transfer-threads.ts).
 */
async function bundleTransferThread(root: string): Promise<string> {
  const result = await build({
    ...commonOptions(root),
    entryPoints: [path.join(root, "src", "engine", "transfer-thread.ts")],
    write: false,
    define: { "import.meta.url": META_URL },
  });
  const text = result.outputFiles[0]?.text;
  if (!text) throw new Error("release/bundle.ts: esbuild gave no output for the transfer thread");
  return text;
}

/** Bundle the CLI into `outFile`; fails if an excluded package or the lazy-require line's target slipped. */
export async function bundleCli(opts: { root: string; version: string; commit: string; buildDate: string; outFile: string }): Promise<BundleResult> {
  const threadSource = await bundleTransferThread(opts.root);
  const result = await build({
    ...commonOptions(opts.root),
    entryPoints: [path.join(opts.root, "src", "cli", "main.ts")],
    outfile: opts.outFile,
    metafile: true,
    define: { "import.meta.url": META_URL, [TRANSFER_THREAD_SOURCE]: JSON.stringify(threadSource) },
    plugins: [versionPlugin(opts.root, { version: opts.version, commit: opts.commit, buildDate: opts.buildDate }), lazyRequirePlugin(), noDemoServerPlugin()],
  });
  const inputs = Object.keys(result.metafile.inputs);
  const leaked = inputs.filter((i) => EXCLUDED_PACKAGES.some((p) => i.includes(`node_modules/${p}/`)));
  if (leaked.length > 0) throw new Error(`the bundle must not contain the demo's server, but holds ${leaked.slice(0, 5).join(", ")}`);
  for (const lazy of ["pino-pretty", "cli-progress"]) {
    if (!inputs.some((i) => i.includes(`node_modules/${lazy}/`))) throw new Error(`${lazy} is missing from the bundle (was ${LAZY_REQUIRE_LINE} changed?)`);
  }
  const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
  return { file: opts.outFile, bytes, inputs };
}
