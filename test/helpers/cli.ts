/** Runs the real `fansync` command as a child process and captures its outcome. */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** Path to the launcher (bin/fansync.js, which runs the compiled dist/). */
export const FANSYNC_BIN = fileURLToPath(new URL("../../bin/fansync.js", import.meta.url));

/** Outcome of one run. */
export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout's JSON log lines, parsed. */
  readonly logs: readonly Record<string, unknown>[];
}

/** Parse pino JSON lines out of a stdout capture. */
export function parseLogs(stdout: string): Record<string, unknown>[] {
  return stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** How to start fansync: `node bin/fansync.js` by default; the release tests pass the single executable. */
export type FansyncCommand = readonly [string, ...string[]];

/** The launcher run by the Node running the tests. */
export const NODE_LAUNCHER: FansyncCommand = [process.execPath, FANSYNC_BIN];

/** A started child whose output is being captured. */
export type CapturedChild = ChildProcess & { out: { stdout: string; stderr: string } };

/** Run `fansync <args>` to completion. */
export async function runCli(args: readonly string[], opts: { env?: Record<string, string | undefined>; timeoutMs?: number; wrap?: readonly string[]; command?: FansyncCommand } = {}): Promise<CliResult> {
  const child = startCli(args, opts);
  return waitCli(child, opts.timeoutMs ?? 120_000);
}

/**
 * Start `fansync <args>` (a daemon, or a run to kill) and return the child; `wrap` is a command
 * line it runs under (e.g. setpriv dropping capabilities), `command` how fansync itself is started
 * (the release tests pass the single executable).
 */
export function startCli(args: readonly string[], opts: { env?: Record<string, string | undefined>; wrap?: readonly string[]; command?: FansyncCommand } = {}): CapturedChild {
  const [file, ...rest] = [...(opts.wrap ?? []), ...(opts.command ?? NODE_LAUNCHER), ...args] as [string, ...string[]];
  return startCaptured([file, ...rest], { env: { ...process.env, ...opts.env } });
}

/** Start any program with stdin closed and stdout/stderr captured. */
export function startCaptured(argv: readonly [string, ...string[]], opts: { env?: Record<string, string | undefined> } = {}): CapturedChild {
  const [file, ...args] = argv;
  const child = spawn(file, args, {
    env: opts.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  }) as CapturedChild;
  child.out = { stdout: "", stderr: "" };
  child.stdout?.on("data", (d: Buffer) => (child.out.stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (child.out.stderr += d.toString()));
  return child;
}

/** Wait for a started child to exit. */
export async function waitCli(child: CapturedChild, timeoutMs = 120_000): Promise<CliResult> {
  const t = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve([child.exitCode, child.signalCode]);
    else child.once("close", (c, s) => resolve([c, s]));
  });
  clearTimeout(t);
  return { code, signal, stdout: child.out.stdout, stderr: child.out.stderr, logs: parseLogs(child.out.stdout) };
}
