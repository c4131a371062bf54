/**
 * A fresh Debian root to install the .deb into, as root, and to run its units in.
 *
 * The root is `mmdebstrap --variant=minbase` of this machine's Debian release plus systemd (for
 * `systemctl enable` and its unit directories), built once from the machine's own apt sources and
 * cached as a tarball outside the clone; each test extracts a copy (a few seconds).
 *
 * No systemd runs as PID 1 here, so a unit is started the way systemd would start it, from the
 * unit file as installed: its ExecStart argv, User=/Group= (setpriv, with the user's groups),
 * ProtectSystem=strict (the root bind-mounted read-only) with ReadWritePaths= writable again,
 * PrivateTmp=, UMask=, NoNewPrivileges=, an empty CapabilityBoundingSet=, StateDirectory= (as
 * $STATE_DIRECTORY) and EnvironmentFile=. Each run gets its own mount namespace (unshare), so
 * nothing is mounted on the host. Settings that only take things away (ProtectKernel*, Restrict*,
 * SystemCallArchitectures, ...) are not emulated; any other setting makes {@link serviceSandbox}
 * throw, so a new one cannot be silently ignored.
 */
import { execFile } from "node:child_process";
import { access, mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { releaseCacheDir } from "../../release/node-runtime.ts";
import { type CapturedChild, type CliResult, startCaptured, waitCli } from "./cli.ts";
import { type CronFile, execStartArgv, parseCronFile, parseUnit, type UnitFile, unitValue } from "./unit-file.ts";

const run = promisify(execFile);

/** Packages on top of minbase: systemd gives `systemctl enable` and the unit directories. */
const EXTRA_PACKAGES = ["systemd"];

/** This machine's Debian codename (the root is of the same release). */
async function codename(): Promise<string> {
  const text = await readFile("/etc/os-release", "utf8");
  const m = /^VERSION_CODENAME=(\S+)$/m.exec(text);
  if (!m) throw new Error("/etc/os-release names no VERSION_CODENAME: the release tests need a Debian machine");
  return (m[1] as string).replace(/^"|"$/g, "");
}

/** The cached root tarball, built with mmdebstrap from this machine's apt sources on first use. */
export async function rootfsTarball(): Promise<string> {
  const name = await codename();
  const file = path.join(releaseCacheDir(), `rootfs-${name}-minbase-${EXTRA_PACKAGES.join("+")}.tar`);
  if (await access(file).then(() => true, () => false)) return file;
  // The machine's own apt sources (files mmdebstrap pastes into the root's sources.list).
  const sources: string[] = [];
  for (const f of ["/etc/apt/sources.list", ...(await listDir("/etc/apt/sources.list.d")).map((e) => `/etc/apt/sources.list.d/${e}`)]) {
    if (!/\.(list|sources)$/.test(f)) continue;
    const text = await readFile(f, "utf8").catch(() => "");
    if (/^\s*(deb|Types:)/m.test(text)) sources.push(f);
  }
  if (sources.length === 0) throw new Error("no apt sources on this machine to build the test root from");
  await mkdir(releaseCacheDir(), { recursive: true });
  const tmp = `${file}.partial-${process.pid}`;
  try {
    await run("mmdebstrap", ["--variant=minbase", `--include=${EXTRA_PACKAGES.join(",")}`, "--mode=root", "--format=tar", name, tmp, ...sources], { timeout: 600_000, maxBuffer: 64 << 20 });
  } catch (err) {
    await rm(tmp, { force: true });
    const e = err as { code?: string; stderr?: string };
    if (e.code === "ENOENT") throw new Error("mmdebstrap is not installed (apt-get install mmdebstrap; .ci/run does)", { cause: err });
    throw new Error(`mmdebstrap failed:\n${e.stderr ?? ""}`, { cause: err });
  }
  await rename(tmp, file);
  return file;
}

async function listDir(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

/** A user as the root's /etc/passwd has it. */
export interface RootUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
  readonly shell: string;
}

/** Mounts and identity for one process run inside the root (a unit, a cron job, a command). */
export interface Sandbox {
  /** Host directories mounted over paths inside the root (e.g. a master's docroot on /var/www/html). */
  readonly binds?: readonly { readonly from: string; readonly to: string }[];
  /** ProtectSystem=strict: the whole root read-only except `writable`. */
  readonly readOnlyRoot?: boolean;
  readonly writable?: readonly string[];
  readonly privateTmp?: boolean;
  readonly umask?: string;
  /** Run as this user and group (with the user's supplementary groups); root when unset. */
  readonly user?: { readonly name: string; readonly group: string };
  readonly noNewPrivileges?: boolean;
  readonly dropCapabilities?: boolean;
  /** The whole environment of the process (nothing is inherited). */
  readonly env: Readonly<Record<string, string>>;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The shell script (run in a new mount namespace, $1 = the root) that sets up `s` and execs argv. */
export function sandboxScript(s: Sandbox, argv: readonly string[]): string {
  const lines = ["set -eu", 'R="$1"', 'mount --bind "$R" "$R"', 'mount -t proc proc "$R/proc"', 'mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts"'];
  for (const b of s.binds ?? []) lines.push(`mount --bind ${q(b.from)} "$R"${q(b.to)}`);
  if (s.readOnlyRoot) {
    lines.push('mount -o remount,bind,ro "$R"');
    for (const b of s.binds ?? []) lines.push(`mount -o remount,bind,ro "$R"${q(b.to)}`);
    for (const w of s.writable ?? []) lines.push(`mount --bind "$R"${q(w)} "$R"${q(w)}`, `mount -o remount,bind,rw "$R"${q(w)}`);
  }
  if (s.privateTmp) lines.push('mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"', 'mount -t tmpfs -o mode=1777 tmpfs "$R/var/tmp"');
  if (s.umask) lines.push(`umask ${s.umask}`);
  const priv = s.user
    ? ["/usr/bin/setpriv", `--reuid=${s.user.name}`, `--regid=${s.user.group}`, "--init-groups", ...(s.noNewPrivileges ? ["--no-new-privs"] : []), ...(s.dropCapabilities ? ["--bounding-set=-all"] : []), "--"]
    : [];
  const env = Object.entries(s.env).map(([k, v]) => `${k}=${v}`);
  lines.push(`exec chroot "$R" ${[...priv, "/usr/bin/env", "-i", ...env, ...argv].map(q).join(" ")}`);
  return lines.join("\n");
}

// [Service] settings the emulation applies, and those it knowingly leaves to systemd (they only
// restrict, or only matter to systemd's own bookkeeping: restarts, timeouts, exit statuses).
const APPLIED = new Set(["Type", "User", "Group", "ExecStart", "EnvironmentFile", "StateDirectory", "StateDirectoryMode", "ProtectSystem", "ReadWritePaths", "PrivateTmp", "NoNewPrivileges", "CapabilityBoundingSet", "UMask"]);
const LEFT_TO_SYSTEMD = new Set([
  "Restart", "RestartSec", "RestartPreventExitStatus", "ExecReload", "KillSignal", "TimeoutStopSec", "TimeoutStartSec", "SuccessExitStatus", "ProtectHome", "PrivateDevices",
  "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname",
  "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "SystemCallArchitectures",
]);

/** A Debian root in a temp directory. */
export class DebianRoot {
  readonly dir: string;
  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Extract a fresh copy of the cached root. */
  static async create(): Promise<DebianRoot> {
    const tar = await rootfsTarball();
    const dir = await mkdtemp(path.join(os.tmpdir(), "fansync-root-"));
    await run("tar", ["-xf", tar, "-C", dir]);
    return new DebianRoot(dir);
  }

  /** Host path of a path inside the root. */
  host(p: string): string {
    return path.join(this.dir, p);
  }

  /** Run argv in the root under `s`, to completion. */
  async exec(argv: readonly string[], s: Sandbox = { env: DEFAULT_ENV }, timeoutMs = 120_000): Promise<CliResult> {
    return waitCli(this.start(argv, s), timeoutMs);
  }

  /** A shell script run by /bin/sh -e as root inside the root (the way an operator types commands). */
  async sh(script: string, env: Readonly<Record<string, string>> = DEFAULT_ENV): Promise<CliResult> {
    return this.exec(["/bin/sh", "-ec", script], { env });
  }

  /** Start argv in the root under `s`; the child's pid is the program's own (every step execs). */
  start(argv: readonly string[], s: Sandbox): CapturedChild {
    return startCaptured(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", sandboxScript(s, argv), "sandbox", this.dir], { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
  }

  /** A user of the root (its /etc/passwd). */
  async user(name: string): Promise<RootUser | undefined> {
    const text = await readFile(this.host("etc/passwd"), "utf8");
    for (const line of text.split("\n")) {
      const f = line.split(":");
      if (f[0] === name) return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] as string, shell: f[6] as string };
    }
    return undefined;
  }

  /** The name of a group id of the root (its /etc/group). */
  async groupName(gid: number): Promise<string | undefined> {
    const text = await readFile(this.host("etc/group"), "utf8");
    return text.split("\n").map((l) => l.split(":")).find((f) => Number(f[2]) === gid && f[0])?.[0];
  }

  /** An installed unit file, parsed. */
  async unit(name: string): Promise<UnitFile> {
    return parseUnit(await readFile(this.host(`usr/lib/systemd/system/${name}`), "utf8"));
  }

  /** How systemd would run `unit`'s ExecStart: argv and sandbox, from the installed unit file. */
  async serviceSandbox(name: string, extra: { binds?: Sandbox["binds"]; env?: Readonly<Record<string, string>> } = {}): Promise<{ argv: string[]; sandbox: Sandbox; unit: UnitFile }> {
    const unit = await this.unit(name);
    for (const key of unit.get("Service")?.keys() ?? []) {
      if (!APPLIED.has(key) && !LEFT_TO_SYSTEMD.has(key)) throw new Error(`${name}: [Service] ${key}= is neither emulated nor known to be safe to leave out`);
    }
    const get = (k: string) => unitValue(unit, "Service", k);
    const userName = get("User") ?? "root";
    const user = await this.user(userName);
    if (!user) throw new Error(`${name}: User=${userName} does not exist in the root`);
    const group = get("Group") ?? (await this.groupName(user.gid)) ?? userName;
    const env: Record<string, string> = {
      // systemd's default PATH for services, and what it sets from User=.
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: user.home, USER: user.name, LOGNAME: user.name, SHELL: user.shell,
    };
    const stateDir = get("StateDirectory");
    if (stateDir) env.STATE_DIRECTORY = `/var/lib/${stateDir}`;
    for (const spec of unit.get("Service")?.get("EnvironmentFile") ?? []) {
      const optional = spec.startsWith("-");
      const file = optional ? spec.slice(1) : spec;
      const text = await readFile(this.host(file), "utf8").catch((err: NodeJS.ErrnoException) => {
        if (optional && err.code === "ENOENT") return "";
        throw err;
      });
      for (const line of text.split("\n")) {
        const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
        if (m) env[m[1] as string] = (m[2] as string).replace(/^"(.*)"$/, "$1");
      }
    }
    Object.assign(env, extra.env);
    const protect = get("ProtectSystem");
    if (protect !== undefined && protect !== "strict") throw new Error(`${name}: ProtectSystem=${protect} is not emulated`);
    // A leading "-" makes a path optional: systemd skips it when it does not exist.
    const writable: string[] = [];
    for (const spec of (unit.get("Service")?.get("ReadWritePaths") ?? []).flatMap((v) => v.split(/\s+/).filter(Boolean))) {
      const optional = spec.startsWith("-");
      const p = optional ? spec.slice(1) : spec;
      if (optional && !(await stat(this.host(p)).catch(() => undefined))) continue;
      writable.push(p);
    }
    if (stateDir) writable.push(`/var/lib/${stateDir}`);
    const sandbox: Sandbox = {
      binds: extra.binds,
      readOnlyRoot: protect === "strict",
      writable: [...new Set(writable)],
      privateTmp: get("PrivateTmp") === "yes",
      umask: get("UMask"),
      user: { name: user.name, group },
      noNewPrivileges: get("NoNewPrivileges") === "yes",
      dropCapabilities: get("CapabilityBoundingSet") === "",
      env,
    };
    return { argv: execStartArgv(unit), sandbox, unit };
  }

  /** Start a unit as systemd would (see the file comment); the child is the service's main process. */
  async startService(name: string, extra: { binds?: Sandbox["binds"]; env?: Readonly<Record<string, string>> } = {}): Promise<CapturedChild & { argv: string[] }> {
    const { argv, sandbox } = await this.serviceSandbox(name, extra);
    return Object.assign(this.start(argv, sandbox), { argv });
  }

  /**
   * Run the job of an installed cron.d file as cron would: as its user (with the user's groups),
   * with cron's environment (HOME, LOGNAME, SHELL=/bin/sh, PATH=/usr/bin:/bin) and the file's own
   * assignments, through `$SHELL -c`.
   */
  async runCronJob(file: string, extra: { binds?: Sandbox["binds"]; env?: Readonly<Record<string, string>> } = {}): Promise<CliResult & { command: string }> {
    const cron = parseCronFile(await readFile(this.host(file), "utf8"));
    if (cron.jobs.length !== 1) throw new Error(`${file}: expected one job, found ${cron.jobs.length}`);
    const job = cron.jobs[0] as CronFile["jobs"][number];
    const user = await this.user(job.user);
    if (!user) throw new Error(`${file}: user ${job.user} does not exist in the root`);
    const group = (await this.groupName(user.gid)) ?? user.name;
    const env = { HOME: user.home, LOGNAME: user.name, SHELL: "/bin/sh", PATH: "/usr/bin:/bin", ...cron.env, ...extra.env };
    const r = await this.exec([env.SHELL, "-c", job.command], { binds: extra.binds, user: { name: user.name, group }, env });
    return { ...r, command: job.command };
  }

  /** Remove the root (no mounts are left on the host: every run had its own namespace). */
  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** The environment of commands an operator runs as root. */
export const DEFAULT_ENV: Readonly<Record<string, string>> = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root", LANG: "C.UTF-8" };
