// Runs one tool invocation as a child process and measures wall time, peak RSS and CPU time.
//
// Peak RSS comes from GNU time (`/usr/bin/time -f %M`, Debian package `time`): the kernel's
// ru_maxrss of the waited child, exact and free of sampling gaps, unlike polling /proc. Daemons,
// which must be signalled directly, are read from /proc/PID/status VmHWM (the kernel's own
// high-water mark) just before they are stopped. CPU time (user + system) comes from GNU time too
// (%U %S, the waited child and its own children); the server's from /proc/PID/stat.
import { spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync, createWriteStream, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";

/** A command line to run, with its environment (complete: nothing is inherited implicitly). */
export type CommandSpec = { cmd: string; args: string[]; env: Record<string, string>; cwd?: string };

/** The outcome of one invocation. */
export type RunOutcome = {
  wallMs: number;
  /** Peak RSS in KiB, when GNU time is available. */
  rssKb: number | undefined;
  /** User + system CPU seconds of the tool (and its children), when GNU time is available. */
  cpuS: number | undefined;
  exitCode: number | null;
  timedOut: boolean;
  /** Last lines of stderr/stdout, for failure notes. */
  tail: string;
};

/** Path of GNU time, or undefined when the `time` package is not installed. */
export const GNU_TIME = existsSync("/usr/bin/time") ? "/usr/bin/time" : undefined;

// Process groups of the tool runs in flight, so an interrupted bench can end them (they run
// detached and would not see the terminal's Ctrl-C).
const activeGroups = new Set<number>();

/** Kills the process groups of every tool run still in flight (for SIGINT/SIGTERM handlers). */
export function killActiveRuns(): void {
  for (const pgid of activeGroups) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  activeGroups.clear();
}

/** Last `n` characters of a log file, trimmed to whole lines. */
function tailOf(path: string, n = 1500): string {
  try {
    const s = readFileSync(path, "utf8");
    const t = s.length > n ? s.slice(s.length - n) : s;
    return t.trim();
  } catch {
    return "";
  }
}

/** Runs `spec` to completion (or until `timeoutMs`), logging its output to `logPath`. */
export async function runMeasured(spec: CommandSpec, logPath: string, timeoutMs: number): Promise<RunOutcome> {
  const rssDir = mkdtempSync(join(tmpdir(), "bench-rss-"));
  const rssFile = join(rssDir, "rss");
  const [cmd, args] = GNU_TIME === undefined ? [spec.cmd, spec.args] : [GNU_TIME, ["-f", "%M %U %S", "-o", rssFile, spec.cmd, ...spec.args]];
  const log = createWriteStream(logPath, { flags: "a" });
  log.write(`$ ${spec.cmd} ${spec.args.join(" ")}\n`);
  const started = performance.now();
  // Own process group, so a timeout can kill the tool together with GNU time around it.
  const child = spawn(cmd, args, { env: spec.env, cwd: spec.cwd, stdio: ["ignore", "pipe", "pipe"], detached: true });
  if (child.pid !== undefined) activeGroups.add(child.pid);
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
  }, timeoutMs);
  const exitCode = await new Promise<number | null>((resolve) => {
    child.once("error", () => resolve(127));
    child.once("close", (code) => resolve(code));
  });
  const wallMs = performance.now() - started;
  clearTimeout(timer);
  if (child.pid !== undefined) activeGroups.delete(child.pid);
  await new Promise<void>((resolve) => log.end(resolve));
  let rssKb: number | undefined;
  let cpuS: number | undefined;
  try {
    // GNU time writes "Command exited with non-zero status N" before the figures on failures.
    const lines = readFileSync(rssFile, "utf8").trim().split("\n");
    const [m, u, sy] = (lines[lines.length - 1] ?? "").split(" ").map(Number);
    if (m !== undefined && Number.isFinite(m) && m > 0) rssKb = m;
    if (u !== undefined && sy !== undefined && Number.isFinite(u) && Number.isFinite(sy)) cpuS = u + sy;
  } catch {
    rssKb = undefined;
  }
  rmSync(rssDir, { recursive: true, force: true });
  return { wallMs, rssKb, cpuS, exitCode, timedOut, tail: tailOf(logPath) };
}

/** Peak RSS (VmHWM) of a live process in KiB, from /proc. */
export function readPeakRssKb(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Clock ticks per second of /proc/PID/stat's CPU fields (USER_HZ: 100 on Linux). */
const USER_HZ = 100;

/**
 * User + system CPU seconds a live process has used so far (/proc/PID/stat utime + stime, its
 * threads included), or undefined when it cannot be read (not Linux, process gone).
 */
export function readCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name and state.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / USER_HZ : undefined;
  } catch {
    return undefined;
  }
}
