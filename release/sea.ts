/**
 * Node single executables: the bundle becomes a blob (node --experimental-sea-config), injected
 * into a copy of each platform's official node binary with postject; then each binary is checked
 * for what can be checked without running it (the arm64 one cannot run here).
 */
import { execFile } from "node:child_process";
import { chmod, copyFile, open, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { createRequire } from "node:module";
import { promisify } from "node:util";
import { parseElfHeader } from "./elf.ts";
import { type Platform, SEA_FUSE, SEA_RESOURCE } from "./platforms.ts";

const run = promisify(execFile);
const require = createRequire(import.meta.url);

/**
 * Write the preparation blob for `bundle` with `node` (which must be the very Node version the
 * executables carry). No code cache and no snapshot: those are specific to the CPU that makes
 * them, and without them one blob serves every platform (a cron pull starts ~35 ms slower).
 * execArgv gives the executable the launcher's V8 flag (see bin/fansync.js).
 */
export async function writeSeaBlob(opts: { node: string; bundle: string; blob: string }): Promise<void> {
  const dir = path.dirname(opts.blob);
  const config = path.join(dir, "sea-config.json");
  // Paths relative to the blob's directory: the executable names its main script as written here
  // (in a stack trace, say), and a build directory must not appear in a release's output.
  await writeFile(config, JSON.stringify({
    main: path.relative(dir, opts.bundle),
    output: path.basename(opts.blob),
    disableExperimentalSEAWarning: true,
    useCodeCache: false,
    useSnapshot: false,
    // The launcher's flags (bin/fansync.js says why each).
    execArgv: ["--max-semi-space-size=8", "--heap-growing-percent=50"],
  }, null, 2));
  await run(opts.node, ["--experimental-sea-config", "sea-config.json"], { cwd: dir });
}

/** Copy `node` to `out` and inject `blob` into it. */
export async function injectSea(opts: { node: string; blob: string; out: string }): Promise<void> {
  await copyFile(opts.node, opts.out);
  await chmod(opts.out, 0o755);
  const cli = path.join(path.dirname(require.resolve("postject")), "cli.js");
  try {
    // postject's ELF writer prints harmless "Can't find string offset" warnings; shown only on failure.
    await run(process.execPath, [cli, opts.out, SEA_RESOURCE, opts.blob, "--sentinel-fuse", SEA_FUSE], { maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`postject failed on ${opts.out}:\n${e.stdout ?? ""}${e.stderr ?? ""}`, { cause: err });
  }
}

/** What {@link checkSea} found; every field must be true (or the machine match) for a good binary. */
export interface SeaCheck {
  readonly machine: number | undefined;
  readonly machineOk: boolean;
  readonly fuseFlipped: boolean;
  readonly blobPresent: boolean;
}

/** Check a single executable for `p` without running it: ELF machine, fuse flipped, blob bytes inside. */
export async function checkSea(file: string, blobFile: string, p: Platform): Promise<SeaCheck> {
  const fh = await open(file, "r");
  const head = Buffer.alloc(64);
  try {
    await fh.read(head, 0, 64, 0);
  } finally {
    await fh.close();
  }
  const elf = parseElfHeader(head);
  const [bin, blob] = await Promise.all([readFile(file), readFile(blobFile)]);
  return {
    machine: elf?.machine,
    machineOk: elf !== undefined && elf.bits === 64 && elf.littleEndian && elf.machine === p.elfMachine,
    fuseFlipped: bin.includes(`${SEA_FUSE}:1`) && !bin.includes(`${SEA_FUSE}:0`),
    blobPresent: blob.length > 0 && bin.includes(blob),
  };
}
