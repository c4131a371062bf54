/** Reading systemd unit files and cron files the way systemd and cron do, for the parts fansync's use. */

/** A unit file: section → key → values (a repeated key accumulates, as systemd's list settings do). */
export type UnitFile = Map<string, Map<string, string[]>>;

/** Parse a unit file's text. Throws on a line that is neither a comment, a section nor key=value. */
export function parseUnit(text: string): UnitFile {
  const sections: UnitFile = new Map();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = new Map();
      sections.set(header[1] as string, current);
      continue;
    }
    const eq = line.indexOf("=");
    if (!current || eq <= 0) throw new Error(`not a key=value line in a section: ${line}`);
    const key = line.slice(0, eq);
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1)]);
  }
  return sections;
}

/** The last value of a key (what systemd uses for single-valued settings), or undefined. */
export function unitValue(unit: UnitFile, section: string, key: string): string | undefined {
  return unit.get(section)?.get(key)?.at(-1);
}

/**
 * ExecStart= split into argv. fansync's units use plain words only; quoting, $VARIABLES, %
 * specifiers and the @-+!: prefixes are refused rather than half-implemented, so a unit that
 * starts using them makes the test fail until this parser learns them.
 */
export function execStartArgv(unit: UnitFile): string[] {
  const all = unit.get("Service")?.get("ExecStart") ?? [];
  if (all.length !== 1) throw new Error(`expected exactly one ExecStart=, got ${all.length}`);
  const line = all[0] as string;
  if (/["'\\$%]/.test(line) || /^[-@+!:]/.test(line)) throw new Error(`ExecStart uses syntax this parser does not handle: ${line}`);
  const argv = line.split(/\s+/).filter(Boolean);
  if (!argv[0]?.startsWith("/")) throw new Error(`ExecStart must start with an absolute path: ${line}`);
  return argv;
}

/** A cron.d file: its environment assignments and its jobs (schedule, user, shell command). */
export interface CronFile {
  readonly env: Readonly<Record<string, string>>;
  readonly jobs: readonly { readonly schedule: string; readonly user: string; readonly command: string }[];
}

/** Parse an /etc/cron.d file: `NAME=value` lines and `m h dom mon dow user command` lines. */
export function parseCronFile(text: string): CronFile {
  const env: Record<string, string> = {};
  const jobs: { schedule: string; user: string; command: string }[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const assign = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (assign) {
      env[assign[1] as string] = assign[2] as string;
      continue;
    }
    const m = /^(\S+\s+\S+\s+\S+\s+\S+\s+\S+)\s+(\S+)\s+(.+)$/.exec(line);
    if (!m) throw new Error(`not a cron.d job line: ${line}`);
    jobs.push({ schedule: m[1] as string, user: m[2] as string, command: m[3] as string });
  }
  return { env, jobs };
}
