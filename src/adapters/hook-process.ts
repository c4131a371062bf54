/**
 * Runs one hook command (`--on-publish`, `--on-apply`): `sh -c CMD` in its own process group, the
 * given lines on stdin, a deadline after which the whole group is killed (TERM, then KILL).
 */
import { spawn } from "node:child_process";

/** How a hook run ended. */
export interface HookOutcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  /** The last of what it wrote (stdout and stderr), for the log. */
  readonly output: string;
  readonly durationMs: number;
}

// After TERM, this long before KILL.
const KILL_GRACE_MS = 2000;
const OUTPUT_TAIL = 2000;

/** Run `command` with `input` on stdin and `env` as its whole environment; never throws (a spawn failure is an outcome). */
export async function runHookProcess(command: string, input: string, env: Readonly<Record<string, string | undefined>>, timeoutMs: number): Promise<HookOutcome> {
  const started = Date.now();
  return new Promise((resolve) => {
    let output = "";
    let timedOut = false;
    const child = spawn("/bin/sh", ["-c", command], { env: { ...env }, stdio: ["pipe", "pipe", "pipe"], detached: true });
    const keep = (d: Buffer) => (output = (output + d.toString()).slice(-OUTPUT_TAIL));
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    // A hook that does not read its stdin must not fail the run with EPIPE.
    child.stdin.on("error", () => undefined);
    child.stdin.end(input);
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, sig);
      } catch {
        // Already gone.
      }
    };
    let hard: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup("SIGTERM");
      hard = setTimeout(() => killGroup("SIGKILL"), KILL_GRACE_MS);
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, timedOut, output: `${output}${err.message}`, durationMs: Date.now() - started });
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (hard) clearTimeout(hard);
      // What it left behind in its group (a backgrounded child) goes too.
      if (timedOut) killGroup("SIGKILL");
      resolve({ code, signal, timedOut, output, durationMs: Date.now() - started });
    });
  });
}
