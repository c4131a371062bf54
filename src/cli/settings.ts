/** From command line + YAML file to a validated {@link Config}, and the per-job helpers built on it. */
import { readFileSync } from "node:fs";
import { ConfigError, ExitCode, UsageError } from "../core/errors.ts";
import { checkCommand, type CommandName, type ConfigFor, validateConfig } from "../core/config.ts";

/** Read a YAML config file into raw settings (not yet validated). */
export async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  // Loaded only when a config file is given: a cron run with flags never pays for the YAML parser.
  const { parse: parseYaml } = await import("yaml");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`cannot read config file ${file}: ${code ?? String(err)}`, {
      hint: code === "ENOENT"
        ? "check the path; the .deb installs one per role in /etc/fansync/ (master.yaml, replicator.yaml, node.yaml, sync.yaml)"
        : "check the file's permissions: the user fansync runs as must read it",
    });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError([`not valid YAML: ${(err as Error).message.split("\n")[0]}`], `config file ${file}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) throw new ConfigError(["the top level must be a mapping of keys"], `config file ${file}`);
  return doc as Record<string, unknown>;
}

/**
 * Merge the config file (if any) with flags (flags win; undefined means "not given") and validate
 * everything in one pass.
 */
export async function resolveConfig<C extends CommandName>(command: C, configFile: string | undefined, flags: Readonly<Record<string, unknown>>): Promise<{ cfg: ConfigFor<C>; unused: string[] }> {
  const fromFile = configFile ? await readConfigFile(configFile) : {};
  const merged: Record<string, unknown> = { ...fromFile };
  for (const [k, v] of Object.entries(flags)) {
    if (v === undefined) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    merged[k] = v;
  }
  // Without a file every problem is in the command line: a usage error (2), not a config error (3).
  const cfg = configFile ? validateConfig(merged, `configuration (${configFile} + flags)`) : validateConfig(merged, "options", ExitCode.usage);
  return checkCommand(cfg, command, Object.keys(fromFile));
}
