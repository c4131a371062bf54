/**
 * Configuration as written (YAML file + flags, merged) and as resolved: one pure validation pass
 * that reports every problem with its key path and returns a frozen object with defaults filled.
 */
import { type ChmodRules, parseChmod } from "./chmod.ts";
import { ConfigError, ExitCode, type ExitCodeValue, UsageError } from "./errors.ts";
import { DEFAULT_DELETE_LIMIT } from "./guard.ts";
import { type Location, parseLocation } from "./location.ts";
import { checkSite } from "./signing.ts";
import { CONFLICT_RULES, type ConflictRule } from "./sync-plan.ts";
import { type DeleteLimit, parseDeleteLimit, parseDuration, parseSize } from "./units.ts";

/** Per-location connection settings: regions may live on different endpoints and accounts. */
export interface LocationSettings {
  readonly url: string;
  readonly location: Location;
  readonly endpointUrl: string | undefined;
  readonly profile: string | undefined;
  readonly pathStyle: boolean | undefined;
}

/** The resolved configuration every command reads. */
export interface Config {
  readonly endpointUrl: string | undefined;
  readonly pathStyle: boolean | undefined;
  readonly profile: string | undefined;
  readonly logLevel: "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";
  readonly logFormat: "json" | "pretty" | undefined;
  /** Append the log to this file instead of stdout. */
  readonly logFile: string | undefined;
  /** A request silent this long fails and is retried (ms); undefined: FANSYNC_REQUEST_TIMEOUT, else 60 s. */
  readonly timeout: number | undefined;
  /** Progress bar on a TTY (push, pull, watch); false after `--no-progress`. */
  readonly progress: boolean;
  /** `--stats`: a progress log line this often (ms; 0: never); undefined: every 10 s when stderr is not a terminal. */
  readonly stats: number | undefined;
  readonly stateDir: string | undefined;
  readonly concurrency: number;
  /** Transfer threads for downloads (engine/transfer-threads.ts); undefined: one per core beyond the first, at most 3. */
  readonly threads: number | undefined;
  readonly docroot: string | undefined;
  readonly target: Location | undefined;
  readonly exclude: readonly string[];
  readonly excludeFrom: string | undefined;
  readonly include: readonly string[];
  readonly cacheControl: readonly { readonly glob: string; readonly value: string }[];
  readonly multipartThreshold: number;
  readonly partSize: number;
  readonly maxDelete: DeleteLimit;
  readonly force: boolean;
  /** The uploader approves its deletions for every node (recorded in the generation). */
  readonly approveDeletes: boolean;
  readonly dryRun: boolean;
  readonly retain: number;
  readonly delay: number;
  readonly maxDelay: number;
  readonly rescanInterval: number;
  readonly replicateTo: readonly Location[];
  readonly sources: readonly Location[];
  readonly statusFile: string | undefined;
  readonly watch: boolean;
  readonly interval: number;
  readonly staleAfter: number;
  readonly deleteExtraneous: boolean;
  readonly maxLag: number;
  readonly verify: boolean;
  readonly checksum: boolean;
  readonly source: Location | undefined;
  readonly targets: readonly Location[];
  readonly locations: readonly LocationSettings[];
  /** Write this node's status to `<meta>nodes/<nodeId>.json` (pull --report). */
  readonly report: boolean;
  /** Where reports go (default: the source that served the run). */
  readonly reportTo: Location | undefined;
  /** This node's name in fleet reports (default: the host name). */
  readonly nodeId: string | undefined;
  /** Listen address of the status page, /metrics, /healthz and /readyz ("127.0.0.1:9180"); off when unset. */
  readonly http: { readonly host: string; readonly port: number } | undefined;
  /** More locations whose heads and node reports the status page shows (e.g. regions fed by CRR). */
  readonly fleet: readonly Location[];
  /** /readyz answers 503 (a web node's /healthz says STALE) when this far behind the head (default: staleAfter). */
  readonly healthMaxLag: number;
  /** Signed generations (core/signing.ts): the writer's private key file (push, watch, rollback). */
  readonly signingKey: string | undefined;
  /** The site id signatures are bound to (writers: default the target's s3:// URL; nodes: default pinned on first use). */
  readonly site: string | undefined;
  /** Public keys (ed25519:… or .pub files) a node accepts heads from; empty: heads are not checked. */
  readonly trustedKeys: readonly string[];
  /** A node reports STALE and applies nothing when the head was signed (or written) longer ago than this. */
  readonly maxAge: number | undefined;
  /** With a signing key: publish an unchanged generation when the head is older than this (watch, push). */
  readonly heartbeat: number | undefined;
  /** Apply setuid/setgid bits from the bucket (default: stripped). */
  readonly allowSetuid: boolean;
  /** pull, sync: rsync's --chmod rules for what lands in the docroot (e.g. D2775,F664); undefined: the modes from the bucket. */
  readonly chmod: ChmodRules | undefined;
  /** pull, sync: the group (name or gid) of what lands in the docroot, e.g. www-data; undefined: the puller's own. */
  readonly group: string | undefined;
  /** Also keep pack objects of small files for first pulls (push, watch; engine/packs.ts). Off by default: it costs storage and PUTs. */
  readonly packs: boolean;
  /** With packs: rebuild every pack now (push --repack). */
  readonly repack: boolean;
  /** A pull run ends (exit 4) when not done after this long plus time for its bytes; 0: no deadline. */
  readonly runTimeout: number;
  /** sync: globs of the paths this node may publish (empty: everything). */
  readonly owns: readonly string[];
  /** sync: how a path changed on two nodes is settled. */
  readonly conflict: ConflictRule;
  /** sync: where losing versions are kept (default: the node's state directory). */
  readonly conflictsDir: string | undefined;
  /** `--events`: the SQS queue URL whose messages wake the daemon (pull, replicate; docs/events.md). */
  readonly events: string | undefined;
  /** CloudFront distributions to invalidate after each generation: `ID`, or `s3://bucket/prefix=ID` for one location's generations. */
  readonly cloudfrontDistribution: readonly { readonly id: string; readonly location: Location | undefined }[];
  /** A shell command run after each generation this process publishes (writers) or applies (nodes). */
  readonly onPublish: string | undefined;
  readonly onApply: string | undefined;
  /** A hook still running after this long is killed. */
  readonly hookTimeout: number;
}

type Kind =
  | "string" | "bool" | "int" | "size" | "duration" | "deleteLimit" | "s3" | "s3list" | "strlist"
  | "logLevel" | "logFormat" | "url" | "cacheControl" | "locations" | "nodeId" | "listen" | "site" | "conflict" | "distributions" | "chmod" | "group";

/** Every key a config file (or flag) may set, and its kind. */
export const CONFIG_KEYS: Readonly<Record<string, Kind>> = {
  endpointUrl: "url", pathStyle: "bool", profile: "string", logLevel: "logLevel", logFormat: "logFormat", logFile: "string", timeout: "duration", progress: "bool", stats: "duration",
  stateDir: "string", concurrency: "int", threads: "int",
  docroot: "string", target: "s3", exclude: "strlist", excludeFrom: "string", include: "strlist",
  cacheControl: "cacheControl", multipartThreshold: "size", partSize: "size", maxDelete: "deleteLimit",
  force: "bool", approveDeletes: "bool", dryRun: "bool", retain: "int", delay: "duration", maxDelay: "duration", rescanInterval: "duration",
  replicateTo: "s3list", sources: "s3list", statusFile: "string", watch: "bool", interval: "duration",
  staleAfter: "duration", deleteExtraneous: "bool", maxLag: "int", verify: "bool", checksum: "bool",
  source: "s3", targets: "s3list", locations: "locations",
  report: "bool", reportTo: "s3", nodeId: "nodeId", http: "listen", healthMaxLag: "duration", fleet: "s3list",
  signingKey: "string", site: "site", trustedKeys: "strlist", maxAge: "duration", heartbeat: "duration", allowSetuid: "bool", chmod: "chmod", group: "group", packs: "bool", repack: "bool", runTimeout: "duration",
  owns: "strlist", conflict: "conflict", conflictsDir: "string",
  events: "url", cloudfrontDistribution: "distributions", onPublish: "string", onApply: "string", hookTimeout: "duration",
};

/** The commands, each with its own schema: the keys it reads and the locations it cannot run without. */
export type CommandName = "push" | "watch" | "pull" | "sync" | "replicate" | "status" | "doctor" | "log" | "rollback" | "demo" | "keygen" | "events";

/** One command's schema. */
export interface CommandSchema {
  /** Keys this command reads; a config file's other keys are reported as not used by it. */
  readonly keys: readonly string[];
  /** What it cannot run without (from an argument or the config file), with the message when missing. */
  readonly required: readonly { readonly key: "docroot" | "target" | "sources" | "source" | "targets"; readonly missing: string }[];
  /** The command line to show when something required is missing. */
  readonly usage: string;
}

const COMMON_KEYS = ["endpointUrl", "pathStyle", "profile", "logLevel", "logFormat", "logFile", "timeout", "stateDir", "concurrency", "threads", "locations"];
const UPLOAD_KEYS = ["docroot", "target", "exclude", "excludeFrom", "include", "cacheControl", "multipartThreshold", "partSize", "maxDelete", "force", "approveDeletes", "dryRun", "retain", "progress", "stats"];
const DAEMON_KEYS = ["http", "healthMaxLag", "fleet", "staleAfter"];
// Signed generations: every writer that publishes a generation of its own (not the replicator).
const SIGNER_KEYS = ["signingKey", "site"];
// What every writer does after each generation it publishes (docs/events.md).
const PUBLISH_KEYS = ["cloudfrontDistribution", "onPublish", "hookTimeout"];
const needs = {
  docroot: { key: "docroot", missing: "no docroot given" },
  target: { key: "target", missing: "no target location given" },
  location: { key: "target", missing: "no location given" },
  sources: { key: "sources", missing: "no source location given" },
  primary: { key: "source", missing: "no primary location given" },
  regions: { key: "targets", missing: "no region location given" },
} as const;

/** Every command's schema (a YAML file written for one role may hold keys of another: reported, not refused). */
export const COMMAND_SCHEMAS: Readonly<Record<CommandName, CommandSchema>> = {
  push: { keys: [...COMMON_KEYS, ...UPLOAD_KEYS, ...SIGNER_KEYS, ...PUBLISH_KEYS, "heartbeat", "verify", "packs", "repack", "runTimeout"], required: [needs.docroot, needs.target], usage: "fansync push <docroot> s3://bucket/prefix" },
  watch: { keys: [...COMMON_KEYS, ...UPLOAD_KEYS, ...DAEMON_KEYS, ...SIGNER_KEYS, ...PUBLISH_KEYS, "heartbeat", "packs", "delay", "maxDelay", "rescanInterval", "replicateTo", "runTimeout"], required: [needs.docroot, needs.target], usage: "fansync watch <docroot> s3://bucket/prefix" },
  pull: {
    keys: [...COMMON_KEYS, ...DAEMON_KEYS, "sources", "docroot", "maxDelete", "force", "dryRun", "statusFile", "watch", "interval", "deleteExtraneous", "verify", "checksum", "maxLag", "report", "reportTo", "nodeId", "progress", "stats", "chmod", "group", "trustedKeys", "site", "maxAge", "events", "onApply", "hookTimeout"],
    required: [needs.sources, needs.docroot],
    usage: "fansync pull s3://bucket/prefix <docroot>",
  },
  sync: {
    keys: [...COMMON_KEYS, ...DAEMON_KEYS, ...SIGNER_KEYS, ...PUBLISH_KEYS, "trustedKeys", "docroot", "target", "exclude", "excludeFrom", "include", "cacheControl", "multipartThreshold", "partSize", "maxDelete", "force", "dryRun", "retain", "progress", "stats", "chmod", "group", "delay", "maxDelay", "rescanInterval", "interval", "statusFile", "nodeId", "report", "owns", "conflict", "conflictsDir", "events", "onApply", "verify"],
    required: [needs.docroot, needs.target],
    usage: "fansync sync <docroot> s3://bucket/prefix",
  },
  replicate: {
    keys: [...COMMON_KEYS, ...DAEMON_KEYS, ...PUBLISH_KEYS, "source", "targets", "watch", "interval", "multipartThreshold", "partSize", "retain", "verify", "trustedKeys", "site", "events"],
    required: [needs.primary, needs.regions],
    usage: "fansync replicate s3://primary/prefix s3://region/prefix [...]",
  },
  status: { keys: [...COMMON_KEYS, "targets", "statusFile", "staleAfter"], required: [], usage: "fansync status [s3://bucket/prefix ...]" },
  doctor: { keys: [...COMMON_KEYS, "target", "events"], required: [needs.location], usage: "fansync doctor s3://bucket/prefix" },
  log: { keys: [...COMMON_KEYS, "target"], required: [needs.location], usage: "fansync log s3://bucket/prefix" },
  rollback: { keys: [...COMMON_KEYS, ...SIGNER_KEYS, ...PUBLISH_KEYS, "trustedKeys", "target", "cacheControl", "multipartThreshold", "partSize", "maxDelete", "force", "dryRun", "retain"], required: [needs.location], usage: "fansync rollback s3://bucket/prefix --to <generation>" },
  demo: { keys: COMMON_KEYS, required: [], usage: "fansync demo" },
  keygen: { keys: [], required: [], usage: "fansync keygen <keyfile>" },
  events: { keys: [...COMMON_KEYS, "target"], required: [], usage: "fansync events setup|register|unregister|check ..." },
};

/** What each command is sure to have once its schema passed. */
interface Needs {
  push: { readonly docroot: string; readonly target: Location };
  watch: { readonly docroot: string; readonly target: Location };
  pull: { readonly docroot: string };
  sync: { readonly docroot: string; readonly target: Location };
  replicate: { readonly source: Location };
  status: object;
  doctor: { readonly target: Location };
  log: { readonly target: Location };
  rollback: { readonly target: Location };
  demo: object;
  keygen: object;
  events: object;
}

/** The resolved configuration of one command: {@link Config} with what its schema requires. */
export type ConfigFor<C extends CommandName> = Config & Needs[C];

/**
 * Check a resolved config against one command's schema: what it requires must be there (a usage
 * error naming it otherwise, as an argument or a config key); `fileKeys` (the keys the config file
 * set) that this command does not read are returned, for a warning.
 */
export function checkCommand<C extends CommandName>(cfg: Config, command: C, fileKeys: readonly string[]): { cfg: ConfigFor<C>; unused: string[] } {
  const schema = COMMAND_SCHEMAS[command];
  for (const r of schema.required) {
    const v = cfg[r.key];
    if (v === undefined || (Array.isArray(v) && v.length === 0)) {
      throw new UsageError(`${r.missing} (an argument, or \`${r.key}\` in the config file)`, { hint: schema.usage });
    }
  }
  const unused = fileKeys.filter((k) => !schema.keys.includes(k) && k in CONFIG_KEYS);
  return { cfg: cfg as ConfigFor<C>, unused };
}

/** The commands that read a key (for "not used by push; a setting of watch, pull"). */
export function commandsReading(key: string): CommandName[] {
  return (Object.keys(COMMAND_SCHEMAS) as CommandName[]).filter((c) => COMMAND_SCHEMAS[c].keys.includes(key));
}

// Keys that look like secrets are refused outright: credentials come from the AWS chain only.
const SECRET_KEY_RE = /secret|password|accesskey|access_key|sessiontoken|credential/i;

const MIN_PART = 5 * 1024 * 1024;
/** The least default deadline of a pull run, and the default of a push or a watch batch (config runTimeout; docs/commands.md). */
const DEFAULT_RUN_TIMEOUT = 10 * 60_000;
/** The poll interval of a daemon woken by events (docs/events.md). */
export const DEFAULT_EVENTS_INTERVAL = 60_000;

/** The tuning fields every writer (uploader, rollback) takes as the config has them. */
export type WriterTuning = Pick<Config, "concurrency" | "multipartThreshold" | "partSize" | "maxDelete" | "force" | "dryRun" | "retain">;

/** Pick {@link WriterTuning} out of a resolved config. */
export function writerTuning(cfg: Config): WriterTuning {
  const { concurrency, multipartThreshold, partSize, maxDelete, force, dryRun, retain } = cfg;
  return { concurrency, multipartThreshold, partSize, maxDelete, force, dryRun, retain };
}

/** Validate merged raw settings; throws {@link ConfigError} listing every problem. */
export function validateConfig(raw: Readonly<Record<string, unknown>>, source = "configuration", exitCode: ExitCodeValue = ExitCode.config): Config {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    const kind = CONFIG_KEYS[key];
    if (SECRET_KEY_RE.test(key)) {
      problems.push(`${key}: credentials do not belong in a config file; use the AWS credential chain (env, profile, SSO, instance role)`);
      continue;
    }
    if (!kind) {
      problems.push(`${key}: unknown key${suggest(key)}`);
      continue;
    }
    const v = convert(kind, value, key, problems);
    if (v !== undefined) out[key] = v;
  }
  const n = (k: string, d: number) => (out[k] as number | undefined) ?? d;
  const cfg: Config = {
    endpointUrl: out.endpointUrl as string | undefined,
    pathStyle: out.pathStyle as boolean | undefined,
    profile: out.profile as string | undefined,
    logLevel: (out.logLevel as Config["logLevel"] | undefined) ?? "info",
    logFormat: out.logFormat as Config["logFormat"],
    logFile: out.logFile as string | undefined,
    timeout: out.timeout as number | undefined,
    progress: (out.progress as boolean | undefined) ?? true,
    stats: out.stats as number | undefined,
    stateDir: out.stateDir as string | undefined,
    concurrency: n("concurrency", 16),
    threads: out.threads as number | undefined,
    docroot: out.docroot as string | undefined,
    target: out.target as Location | undefined,
    exclude: (out.exclude as string[] | undefined) ?? [],
    excludeFrom: out.excludeFrom as string | undefined,
    include: (out.include as string[] | undefined) ?? [],
    cacheControl: (out.cacheControl as Config["cacheControl"] | undefined) ?? [],
    multipartThreshold: n("multipartThreshold", 8 * 1024 * 1024),
    partSize: n("partSize", 8 * 1024 * 1024),
    maxDelete: (out.maxDelete as DeleteLimit | undefined) ?? DEFAULT_DELETE_LIMIT,
    force: (out.force as boolean | undefined) ?? false,
    approveDeletes: (out.approveDeletes as boolean | undefined) ?? false,
    dryRun: (out.dryRun as boolean | undefined) ?? false,
    retain: n("retain", 50),
    delay: n("delay", 500),
    maxDelay: n("maxDelay", 5000),
    rescanInterval: n("rescanInterval", 3_600_000),
    replicateTo: (out.replicateTo as Location[] | undefined) ?? [],
    sources: (out.sources as Location[] | undefined) ?? [],
    statusFile: out.statusFile as string | undefined,
    watch: (out.watch as boolean | undefined) ?? false,
    // With events the poll is only the safety net (a lost message, a broken queue): once a minute.
    interval: n("interval", out.events !== undefined ? DEFAULT_EVENTS_INTERVAL : 2000),
    staleAfter: n("staleAfter", 300_000),
    deleteExtraneous: (out.deleteExtraneous as boolean | undefined) ?? false,
    maxLag: n("maxLag", 10),
    verify: (out.verify as boolean | undefined) ?? false,
    checksum: (out.checksum as boolean | undefined) ?? false,
    source: out.source as Location | undefined,
    targets: (out.targets as Location[] | undefined) ?? [],
    locations: (out.locations as LocationSettings[] | undefined) ?? [],
    report: (out.report as boolean | undefined) ?? out.reportTo !== undefined,
    reportTo: out.reportTo as Location | undefined,
    nodeId: out.nodeId as string | undefined,
    http: out.http as Config["http"],
    fleet: (out.fleet as Location[] | undefined) ?? [],
    healthMaxLag: n("healthMaxLag", n("staleAfter", 300_000)),
    signingKey: out.signingKey as string | undefined,
    site: out.site as string | undefined,
    trustedKeys: (out.trustedKeys as string[] | undefined) ?? [],
    maxAge: out.maxAge as number | undefined,
    heartbeat: out.heartbeat as number | undefined,
    allowSetuid: (out.allowSetuid as boolean | undefined) ?? false,
    chmod: out.chmod === undefined ? undefined : parseChmod(out.chmod as string),
    group: out.group as string | undefined,
    packs: (out.packs as boolean | undefined) ?? false,
    repack: (out.repack as boolean | undefined) ?? false,
    // A run should not outlive a few of its periods (cron: set interval to the cron period); the
    // puller adds time for the bytes it plans, so a large first pull is not cut short.
    runTimeout: n("runTimeout", Math.max(DEFAULT_RUN_TIMEOUT, 10 * n("interval", 2000))),
    owns: (out.owns as string[] | undefined) ?? [],
    conflict: (out.conflict as ConflictRule | undefined) ?? "newer",
    conflictsDir: out.conflictsDir as string | undefined,
    events: out.events as string | undefined,
    cloudfrontDistribution: (out.cloudfrontDistribution as Config["cloudfrontDistribution"] | undefined) ?? [],
    onPublish: out.onPublish as string | undefined,
    onApply: out.onApply as string | undefined,
    hookTimeout: n("hookTimeout", 60_000),
  };
  if (cfg.concurrency < 1 || cfg.concurrency > 1024) problems.push(`concurrency: expected 1..1024, got ${cfg.concurrency}`);
  if (cfg.threads !== undefined && (cfg.threads < 0 || cfg.threads > 64)) problems.push(`threads: expected 0..64, got ${cfg.threads}`);
  if (cfg.partSize < MIN_PART) problems.push(`partSize: S3 requires parts of at least 5 MiB, got ${cfg.partSize} bytes`);
  if (cfg.multipartThreshold < cfg.partSize && out.multipartThreshold !== undefined) {
    problems.push("multipartThreshold: must be at least partSize");
  }
  if (cfg.maxDelay < cfg.delay) problems.push("maxDelay: must be at least delay");
  if (cfg.retain < 2) problems.push("retain: keep at least 2 generations");
  if (cfg.interval < 50) problems.push("interval: poll at most every 50ms");
  if (cfg.timeout !== undefined && cfg.timeout < 100) problems.push("timeout: at least 100ms");
  if (cfg.maxAge !== undefined && cfg.maxAge < 1000) problems.push("maxAge: at least 1s");
  if (cfg.heartbeat !== undefined && cfg.heartbeat < 1000) problems.push("heartbeat: at least 1s");
  if (cfg.maxAge !== undefined && cfg.heartbeat !== undefined && cfg.heartbeat >= cfg.maxAge) problems.push("heartbeat: must be shorter than maxAge (a quiet site would go STALE)");
  if (cfg.hookTimeout < 100) problems.push("hookTimeout: at least 100ms");
  if (cfg.repack && !cfg.packs) problems.push("repack: needs packs (--packs, or packs: true)");
  if (problems.length > 0) throw new ConfigError(problems, source, exitCode);
  return deepFreeze(cfg);
}

function convert(kind: Kind, v: unknown, key: string, problems: string[]): unknown {
  const fail = (expected: string): undefined => {
    problems.push(`${key}: expected ${expected}, got ${JSON.stringify(v)}`);
    return undefined;
  };
  switch (kind) {
    case "string":
      return typeof v === "string" && v !== "" ? v : fail("a non-empty string");
    case "bool":
      if (typeof v === "boolean") return v;
      if (v === "true" || v === "false") return v === "true";
      return fail("true or false");
    case "int": {
      const x = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
      return Number.isSafeInteger(x) && (x as number) >= 0 ? x : fail("a non-negative integer");
    }
    case "size":
      return parseSize(v) ?? fail('a size such as 8MiB or 8388608');
    case "duration":
      return parseDuration(v) ?? fail('a duration such as 500ms, 2s, 5m or 1h');
    case "deleteLimit":
      return parseDeleteLimit(v) ?? fail('a count such as 100 or a percentage such as "50%"');
    case "url":
      if (typeof v === "string" && /^https?:\/\/[^\s/]+/.test(v)) return v.replace(/\/+$/, "");
      return fail("an http(s):// URL");
    case "logLevel":
      return ["trace", "debug", "info", "warn", "error", "fatal", "silent"].includes(v as string) ? v : fail("one of trace, debug, info, warn, error, fatal, silent");
    case "logFormat":
      return v === "json" || v === "pretty" ? v : fail("json or pretty");
    case "site": {
      const why = typeof v === "string" ? checkSite(v) : "not a string";
      return why === undefined ? v : fail(`a site id (${why})`);
    }
    case "distributions": {
      // "E2ABC…" (every location this process publishes) or "s3://bucket/prefix=E2ABC…" (that one only).
      const list = typeof v === "string" ? [v] : v;
      if (!Array.isArray(list)) return fail("a list of CloudFront distribution ids (ID, or s3://bucket/prefix=ID)");
      const out: { id: string; location: Location | undefined }[] = [];
      list.forEach((x: unknown, i) => {
        const m = typeof x === "string" ? /^(?:(s3:\/\/.+)=)?([A-Z0-9]{1,64})$/.exec(x) : null;
        if (!m) {
          problems.push(`${key}[${i}]: expected a CloudFront distribution id (letters and digits, e.g. E2QWRUHAPOMQZL) or s3://bucket/prefix=ID, got ${JSON.stringify(x)}`);
          return;
        }
        const location = m[1] === undefined ? undefined : s3(m[1], `${key}[${i}]`, problems);
        if (m[1] === undefined || location) out.push({ id: m[2] as string, location });
      });
      return out;
    }
    case "chmod":
      try {
        parseChmod(String(v));
        return String(v);
      } catch (err) {
        return fail(`rsync-style mode rules: ${(err as Error).message}`);
      }
    case "group":
      // A group name (resolved on the node) or a numeric gid.
      return (typeof v === "string" && /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/.test(v)) || (typeof v === "number" && Number.isInteger(v) && v >= 0) || (typeof v === "string" && /^\d+$/.test(v)) ? String(v) : fail("a group name or a numeric gid");
    case "conflict":
      return CONFLICT_RULES.includes(v as ConflictRule) ? v : fail(`one of ${CONFLICT_RULES.join(", ")}`);
    case "nodeId":
      // It becomes part of an object key and an IAM resource: a plain name only.
      return typeof v === "string" && /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(v) ? v : fail("a node name of letters, digits, '.', '_' or '-' (at most 64)");
    case "listen": {
      // host:port, port alone (loopback), or [v6]:port. Binding to all interfaces must be said explicitly.
      const m = typeof v === "number" ? [String(v), "", String(v)] : typeof v === "string" ? /^(?:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):)?(\d{1,5})$/.exec(v) : null;
      const port = m ? Number(m[2]) : NaN;
      if (!m || !(port >= 0 && port <= 65535)) return fail("an address such as 127.0.0.1:9180 or a port");
      return { host: (m[1] || "127.0.0.1").replace(/^\[|\]$/g, ""), port };
    }
    case "s3":
      return s3(v, key, problems);
    case "s3list": {
      const list = typeof v === "string" ? [v] : v;
      if (!Array.isArray(list)) return fail("a list of s3:// locations");
      const locs = list.map((x, i) => s3(x, `${key}[${i}]`, problems));
      return locs.every((l) => l !== undefined) ? locs : undefined;
    }
    case "strlist": {
      const list = typeof v === "string" ? [v] : v;
      if (!Array.isArray(list) || !list.every((x) => typeof x === "string" && x !== "")) return fail("a list of non-empty strings");
      return list;
    }
    case "cacheControl": {
      if (!Array.isArray(v)) return fail("a list of { glob, value }");
      const rules: { glob: string; value: string }[] = [];
      v.forEach((r: unknown, i) => {
        const o = r as Record<string, unknown> | null;
        if (typeof o !== "object" || o === null || typeof o.glob !== "string" || typeof o.value !== "string") {
          problems.push(`${key}[${i}]: expected { glob: string, value: string }`);
        } else rules.push({ glob: o.glob, value: o.value });
      });
      return rules;
    }
    case "locations": {
      if (!Array.isArray(v)) return fail("a list of { url, endpointUrl?, profile?, pathStyle? }");
      const out: LocationSettings[] = [];
      v.forEach((r: unknown, i) => {
        const p = `${key}[${i}]`;
        const o = r as Record<string, unknown> | null;
        if (typeof o !== "object" || o === null) {
          problems.push(`${p}: expected an object`);
          return;
        }
        for (const k of Object.keys(o)) {
          if (!["url", "endpointUrl", "profile", "pathStyle"].includes(k)) problems.push(`${p}.${k}: unknown key`);
        }
        const location = s3(o.url, `${p}.url`, problems);
        const endpointUrl = o.endpointUrl === undefined ? undefined : (convert("url", o.endpointUrl, `${p}.endpointUrl`, problems) as string | undefined);
        const profile = o.profile === undefined ? undefined : (convert("string", o.profile, `${p}.profile`, problems) as string | undefined);
        const pathStyle = o.pathStyle === undefined ? undefined : (convert("bool", o.pathStyle, `${p}.pathStyle`, problems) as boolean | undefined);
        if (location) out.push({ url: o.url as string, location, endpointUrl, profile, pathStyle });
      });
      return out;
    }
  }
}

function s3(v: unknown, key: string, problems: string[]): Location | undefined {
  if (typeof v !== "string") {
    problems.push(`${key}: expected an s3://bucket/prefix location, got ${JSON.stringify(v)}`);
    return undefined;
  }
  try {
    return parseLocation(v);
  } catch (err) {
    problems.push(`${key}: ${err instanceof UsageError ? err.message : String(err)}`);
    return undefined;
  }
}

function suggest(key: string): string {
  const lower = key.toLowerCase().replace(/[-_]/g, "");
  const hit = Object.keys(CONFIG_KEYS).find((k) => editDistance(k.toLowerCase(), lower) <= 2);
  return hit ? ` (did you mean "${hit}"?)` : "";
}

// Levenshtein distance, for "did you mean" on misspelt keys (and kebab-case flag names).
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] as number;
}

function deepFreeze<T>(o: T): T {
  if (typeof o === "object" && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Settings for one location: its own entry in `locations` if any, else the global ones. */
export function settingsFor(cfg: Config, loc: Location): { endpointUrl: string | undefined; profile: string | undefined; pathStyle: boolean | undefined } {
  const own = cfg.locations.find((l) => l.location.bucket === loc.bucket && l.location.prefix === loc.prefix)
    ?? cfg.locations.find((l) => l.location.bucket === loc.bucket && l.location.prefix === "");
  return {
    endpointUrl: own?.endpointUrl ?? cfg.endpointUrl,
    profile: own?.profile ?? cfg.profile,
    pathStyle: own?.pathStyle ?? cfg.pathStyle,
  };
}
