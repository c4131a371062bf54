/**
 * The entry file: parses the command line, runs one command, and maps its outcome to an exit code.
 * It alone calls process.exit. Commands are imported lazily so `--version`, `--help` and a no-op
 * pull do not pay for modules they never use.
 */
import { Command, Option } from "commander";
import { BUILD_INFO, FANSYNC_VERSION, formatVersion } from "../adapters/version.ts";
import { errorLine, ExitCode, FansyncError, Interrupted, type ExitCodeValue } from "../core/errors.ts";
import type { CommandName, ConfigFor } from "../core/config.ts";
import type { Logger } from "../adapters/logger.ts";


type Flags = Record<string, unknown>;

const collect = (v: string, prev: string[] | undefined) => [...(prev ?? []), v];

const COMMON_HEADING = "Connection, state and logging (every command):";

function common(cmd: Command): Command {
  // Shown after the command's own options (see listCommonLast): what a command does comes first.
  return cmd
    .optionsGroup(COMMON_HEADING)
    .option("-c, --config <file>", "YAML config file (flags override it)")
    .option("--endpoint-url <url>", "S3 endpoint URL (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS)")
    .option("--path-style", "path-style addressing (default on when an endpoint URL is given)")
    .option("--no-path-style", "virtual-host addressing")
    .option("--profile <name>", "AWS profile (credentials and region come from the AWS chain only)")
    .option("--state-dir <dir>", "base directory for local state (default: $STATE_DIRECTORY, $XDG_STATE_HOME/fansync or ~/.local/state/fansync)")
    .option("--concurrency <n>", "transfers in flight (default 16)")
    .option("--threads <n>", "threads that download small files beside the main one (default: one per core beyond the first, at most 3; 0: none)")
    .option("--timeout <duration>", "give up on a request silent for this long, then retry it (default 60s)")
    .addOption(new Option("--log-level <level>", "log level (default info)").choices(["trace", "debug", "info", "warn", "error", "fatal", "silent"]))
    .addOption(new Option("--log-format <format>", "log format (default: pretty on a TTY, else json)").choices(["json", "pretty"]))
    .option("--log-file <file>", "append the log to this file instead of stdout (JSON unless --log-format pretty)")
    .addOption(new Option("-v, --verbose", "more log lines (--log-level debug)").conflicts("quiet"))
    .option("-q, --quiet", "only warnings and errors (--log-level warn)")
    .optionsGroup("Options:");
}

function uploadOptions(cmd: Command): Command {
  return cmd
    .option("--exclude <glob>", "exclude paths matching the glob (repeatable)", collect)
    .option("--exclude-from <file>", "read exclude globs from a file, one per line")
    .option("--include <glob>", "re-include paths an exclude matched (repeatable)", collect)
    .option("--cache-control <glob=value>", "Cache-Control for paths matching the glob (repeatable; first match wins)", collect)
    .option("--multipart-threshold <size>", "files at least this big use multipart upload (default 8MiB)")
    .option("--part-size <size>", "multipart part size (default 8MiB)")
    .option("--max-delete <n|pct>", "refuse to delete more than this many files or this share of the published files (default 50%)")
    .option("--force", "allow what the delete guard refuses (empty docroot, mass deletion); nodes then accept those deletions too")
    .option("--approve-deletes", "approve this run's deletions for every node (their --max-delete does not count them); with nothing to publish, approve the current generation's deletions")
    .option("-n, --dry-run", "print the plan and change nothing")
    .option("--retain <n>", "keep manifests and journals of this many generations (default 50)")
    .option("--no-progress", "no progress bar (drawn on stderr on a terminal when a transfer lasts over 0.5s)")
    .option("--stats <duration>", "log a progress line (files, bytes, rate, ETA) this often while transferring; default 10s when stderr is not a terminal, 0: never")
    .option("--signing-key <file>", "sign every generation with this private key (fansync keygen); nodes check it with --trusted-key")
    .option("--site <id>", "with --signing-key: the site id signatures are bound to (default: the target's s3:// URL)")
    .option("--heartbeat <duration>", "with --signing-key: publish an unchanged generation when the head is older than this (keeps nodes' --max-age from going STALE on a quiet site)")
    .option("--packs", "also keep pack objects of small files, so a new node's first pull needs a few large GETs (costs storage and PUTs; see docs/packs.md)")
    .option("--run-timeout <duration>", "stop a push (for watch: a batch, then retried) that takes longer than this plus 4s per MiB it uploads (exit 4; default 10m; 0: none)");
}

/** What a writer does after each generation it publishes (docs/events.md). */
function publishOptions(cmd: Command): Command {
  return cmd
    .option("--cloudfront-distribution <id>", "after each generation, invalidate its changed and deleted paths in this CloudFront distribution (repeatable; s3://bucket/prefix=ID for one location's generations only)", collect)
    .option("--on-publish <command>", "after each generation, run this shell command with its changed/deleted paths as NDJSON on stdin")
    .option("--hook-timeout <duration>", "kill a hook still running after this long (default 60s)");
}

/** The daemons' status page, /metrics, /healthz and /readyz. */
function httpOptions(cmd: Command): Command {
  return cmd
    .option("--http <addr>", "serve a status page, /metrics (Prometheus), /healthz (route traffic by it) and /readyz (in step with the source) on this address, e.g. 127.0.0.1:9180")
    .option("--health-max-lag <duration>", "/readyz answers 503 (and a web node's /healthz says STALE) when this far behind the head (default: --stale-after, 5m)")
    .option("--fleet <s3url>", "with --http, also show this location's head and node reports (repeatable; e.g. regions fed by S3 CRR)", collect);
}

function flagsOf(cmd: Command): Flags {
  const o = cmd.opts();
  const cc = (o.cacheControl as string[] | undefined)?.map((s) => {
    const i = s.lastIndexOf("=");
    return i > 0 ? { glob: s.slice(0, i), value: s.slice(i + 1) } : { glob: s, value: "" };
  });
  const { config: _c, cacheControl: _cc, source: _s, replicateTo, progress, verbose, quiet, trustedKey, ...rest } = o;
  // -v / -q are shorthands for --log-level (which wins when both are given).
  const level = rest.logLevel ?? (verbose === true ? "debug" : quiet === true ? "warn" : undefined);
  // --no-progress only: commander's implied `progress: true` must not override a config file.
  return { ...rest, ...(level ? { logLevel: level } : {}), ...(cc ? { cacheControl: cc } : {}), ...(replicateTo ? { replicateTo } : {}), ...(progress === false ? { progress } : {}), ...(trustedKey ? { trustedKeys: trustedKey } : {}) };
}

/**
 * Run a command body with its config (checked against the command's schema), a logger and a
 * signal that SIGTERM/SIGINT abort.
 */
// The commands that talk to S3 with the AWS chain (doctor diagnoses the chain itself; status
// without a location reads local files only).
const S3_COMMANDS: ReadonlySet<CommandName> = new Set<CommandName>(["push", "watch", "pull", "replicate", "sync", "rollback", "log"]);

async function run<C extends CommandName>(command: C, cmd: Command, flags: Flags, body: (cfg: ConfigFor<C>, log: Logger, signal: AbortSignal) => Promise<number | void>): Promise<never> {
  let log: Logger | undefined;
  let pretty = false;
  let journal = false;
  let code: number = ExitCode.ok;
  const ac = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    stoppedBy = sig;
    log?.info({ signal: sig }, "stopping: draining in-flight work");
    ac.abort(new Error(`received ${sig}`));
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  // SIGHUP never stops fansync (its default would, and systemd counts that as a clean exit, so a
  // daemon stayed dead): it reopens --log-file and a daemon re-reads its config file (onHangUp).
  let hangUp: () => void = () => undefined;
  process.on("SIGHUP", () => hangUp());
  const configFile = cmd.opts().config as string | undefined;
  try {
    const { resolveConfig } = await import("./settings.ts");
    let { cfg, unused } = await resolveConfig(command, configFile, flags);
    const { createLogger, errorFields, isPretty, reopenLogFile, stdoutIsJournal, stdoutIsStderr } = await import("../adapters/logger.ts");
    const logger = createLogger({ level: cfg.logLevel, format: cfg.logFormat, file: cfg.logFile, journalStream: process.env.JOURNAL_STREAM });
    log = logger;
    pretty = isPretty(cfg.logFormat, cfg.logFile);
    // Under systemd the JSON log is the journal, and from cron stdout and stderr go to one pipe:
    // the JSON error line there is enough (not the stderr lines too).
    journal = !pretty && cfg.logFile === undefined && (stdoutIsJournal(process.env.JOURNAL_STREAM) || stdoutIsStderr());
    const warnUnused = (keys: readonly string[]) => import("../core/config.ts").then(({ commandsReading }) => {
      if (keys.length === 0) return;
      const where = keys.map((k) => `${k} (${commandsReading(k).join(", ") || "no command"})`).join(", ");
      logger.warn({ command, keys }, `config keys not used by \`${command}\`, ignored: ${where}`);
    });
    await warnUnused(unused);
    // No region, no credentials, an unknown profile: exit 3 now, not a daemon retrying forever.
    if (S3_COMMANDS.has(command)) await (await import("../commands/wiring.ts")).checkRunnable(cfg);
    const daemon = command === "watch" || command === "sync" || (cfg as { watch?: boolean }).watch === true;
    // A daemon restarts its job on a config file that validates: the job drains as on SIGTERM,
    // then starts again with the new file. One that does not validate changes nothing.
    let reload: { ac: AbortController; next?: ConfigFor<C> } = { ac: new AbortController() };
    hangUp = () => {
      if (reopenLogFile()) logger.info("reopened the log file");
      if (!daemon || configFile === undefined || ac.signal.aborted) return;
      const pending = reload;
      resolveConfig(command, configFile, flags).then(
        (r) => {
          if (pending !== reload || ac.signal.aborted) return;
          logger.info({ config: configFile }, "config file re-read: restarting the job with it");
          pending.next = r.cfg;
          unused = r.unused;
          pending.ac.abort(new Error("reloading the config file"));
        },
        (err: unknown) => logger.warn({ config: configFile, ...errorFields(err) }, `config file not reloaded, running on the previous one: ${errorLine(err)}`),
      );
    };
    for (;;) {
      code = (await body(cfg, logger, AbortSignal.any([ac.signal, reload.ac.signal]))) ?? ExitCode.ok;
      if (ac.signal.aborted || reload.next === undefined) break;
      cfg = reload.next;
      reload = { ac: new AbortController() };
      await warnUnused(unused);
    }
  } catch (err) {
    const to = pretty ? undefined : log;
    code = stoppedBy ? reportStopped(err, stoppedBy, to) : report(err, to, journal);
  }
  process.exit(code);
}

/**
 * A run a signal stopped: one line, in the JSON log or (a person at a terminal) on stderr, never both
 * and never a stack trace of what the stop cut short; exit 128 + the signal's number. An error that
 * is not about the stop (a refused config, a guard) is reported as usual, with its own code.
 */
function reportStopped(err: unknown, sig: NodeJS.Signals, log: Logger | undefined): ExitCodeValue {
  if (err instanceof FansyncError && !(err instanceof Interrupted) && !cutShort(err)) return report(err, log);
  const line = err instanceof Interrupted ? err.message : "interrupted: the next run continues";
  if (log) log.warn({ signal: sig }, line);
  else process.stderr.write(`fansync: ${line}\n`);
  return sig === "SIGTERM" ? ExitCode.terminated : ExitCode.interrupted;
}

/**
 * Whether `err` is a request the stop itself aborted (its cause, at any depth, an AbortError): the
 * stop can land outside the transfers (reading or writing the head of a commit), where the request's
 * error would otherwise read "cannot reach … (AbortError)", exit 7.
 */
function cutShort(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e.name === "AbortError") return true;
  }
  return false;
}

function report(err: unknown, log: Logger | undefined, journal = false): ExitCodeValue {
  if (err instanceof FansyncError) {
    if (err.exitCode === ExitCode.locked) {
      // A cron overlap is normal: one quiet line, its own exit code.
      log?.info({ exitCode: err.exitCode }, err.message);
      return err.exitCode;
    }
    // Once for a machine (the JSON log), once for a person (stderr); a terminal's pretty log skips it.
    log?.error({ error: { type: err.name, message: err.message, code: err.exitCode, hint: err.hint, cause: causeOf(err) } }, err.message);
    if (!journal) process.stderr.write(`fansync: ${err.message}\n${err.hint ? `  what to do: ${err.hint}\n` : ""}`);
    return err.exitCode;
  }
  log?.fatal({ error: { type: (err as Error | undefined)?.name ?? typeof err, message: err instanceof Error ? err.message : String(err), stack: err instanceof Error ? err.stack : undefined, code: ExitCode.fatal } }, "unexpected error");
  if (!journal) process.stderr.write(`fansync: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return ExitCode.fatal;
}

function causeOf(err: Error): string | undefined {
  const c = err.cause as { name?: string; code?: string; message?: string } | undefined;
  return c ? `${c.name ?? c.code ?? ""}: ${c.message ?? ""}`.slice(0, 300) : undefined;
}

/** Help lists option groups in the order they first appear: move the shared ones after each command's own. */
function listCommonLast(program: Command): void {
  for (const c of program.commands) {
    const opts = c.options as Option[];
    const shared = opts.filter((o) => o.helpGroupHeading === COMMON_HEADING);
    opts.splice(0, opts.length, ...opts.filter((o) => o.helpGroupHeading !== COMMON_HEADING), ...shared);
  }
}

/** Build the commander program. */
export function buildProgram(): Command {
  const program = new Command("fansync")
    .description("Keep the docroot of many web servers in sync through S3-compatible object storage")
    .version(FANSYNC_VERSION, "-V, --version")
    // A mistyped flag: the error and commander's "did you mean", then one line, not the whole help.
    .showHelpAfterError("(run the command with --help for its options)")
    .exitOverride((e) => {
      // commander's own errors are usage errors (exit 2); help and version exit 0.
      process.exit(e.exitCode === 0 ? 0 : ExitCode.usage);
    });

  publishOptions(uploadOptions(common(program.command("push"))))
    .description("upload a docroot to s3://bucket/prefix and publish a new generation (one-shot)")
    .option("--verify", "check every object the head names (one HEAD each) and upload again any that holds other bytes")
    .option("--repack", "with --packs: rebuild every pack now")
    .argument("[docroot]", "local directory to publish")
    .argument("[target]", "s3://bucket/prefix")
    .action(async (docroot: string | undefined, target: string | undefined, _o: unknown, cmd: Command) => {
      await run("push", cmd, { ...flagsOf(cmd), docroot, target }, async (cfg, log, signal) => {
        const { push } = await import("../commands/push.ts");
        await push(cfg, log, signal);
      });
    });

  publishOptions(httpOptions(uploadOptions(common(program.command("watch")))))
    .description("uploader daemon: reconcile, then upload changes as the docroot changes")
    .argument("[docroot]", "local directory to publish")
    .argument("[target]", "s3://bucket/prefix")
    .option("--delay <duration>", "quiet window before a batch is published (default 500ms)")
    .option("--max-delay <duration>", "longest a change waits during continuous activity (default 5s)")
    .option("--rescan-interval <duration>", "full reconcile period, catches missed events (default 1h)")
    .option("--replicate-to <s3url>", "also replicate each generation to this location (repeatable)", collect)
    .action(async (docroot: string | undefined, target: string | undefined, _o: unknown, cmd: Command) => {
      await run("watch", cmd, { ...flagsOf(cmd), docroot, target }, async (cfg, log, signal) => {
        const { watch } = await import("../commands/watch.ts");
        await watch(cfg, log, signal);
      });
    });

  httpOptions(common(program.command("pull")))
    .description("bring a web node's docroot to the current generation (cron job, or daemon with --watch)")
    .argument("[source]", "s3://bucket/prefix (more with --source, tried in order)")
    .argument("[docroot]", "local directory to write")
    .option("--source <s3url>", "a source location; repeat for fallbacks, first preferred", collect)
    .option("--max-delete <n|pct>", "refuse to delete more than this many files or this share of the files held (default 50%)")
    .option("--force", "allow what the delete guard refuses, or a head whose generation went backwards (or, with --trusted-key, came again with other content)")
    .option("-n, --dry-run", "print the plan and change nothing")
    .option("--status-file <file>", "write a JSON status here (and a one-line OK/STALE/ERROR companion .txt)")
    .option("--watch", "keep running, polling the head")
    .option("--interval <duration>", "poll interval with --watch (default 2s; 60s with --events)")
    .option("--events <queue-url>", "with --watch: also pull at once when this SQS queue (fed by the bucket's notification for the head) has a message; polling stays as the safety net (docs/events.md)")
    .option("--stale-after <duration>", "report STALE when behind the head for longer than this (default 5m)")
    .option("--delete-extraneous", "also delete local files fansync never wrote (exact mirror)")
    .option("--verify", "compare the docroot with the manifest and repair drift")
    .option("--checksum", "with --verify, compare sha256 too (reads every file)")
    .option("--max-lag <n>", "use a fresher source when the preferred one lags it by more than this many generations (default 10)")
    .option("--report", "write this node's status to <meta>nodes/<node-id>.json in the source used, for `fansync status`")
    .option("--report-to <s3url>", "write the node report to this location instead (implies --report)")
    .option("--node-id <name>", "this node's name in reports (default: the host name)")
    .option("--no-progress", "no progress bar (drawn on stderr on a terminal when a download lasts over 0.5s)")
    .option("--stats <duration>", "log a progress line (files, bytes, rate, ETA) this often while transferring; default 10s when stderr is not a terminal, 0: never")
    .option("--trusted-key <key|file>", "accept only generations signed by this public key (ed25519:… or a .pub file; repeatable, for key rotation)", collect)
    .option("--site <id>", "with --trusted-key: the site whose generations to accept (default: the first one verified, pinned)")
    .option("--max-age <duration>", "report STALE and apply nothing when the head was signed longer ago than this (a frozen mirror)")
    .option("--allow-setuid", "keep setuid/setgid bits from the bucket (default: stripped)")
    .option("--on-apply <command>", "after each generation applied, run this shell command with its changed/deleted paths as NDJSON on stdin (a purge, a reload)")
    .option("--hook-timeout <duration>", "kill --on-apply still running after this long (default 60s)")
    .option("--chmod <rules>", "rsync-style modes for what lands in the docroot, e.g. D2775,F664 (D: directories, F: files; octal or chmod's u+w form)")
    .option("--group <group>", "group (name or gid) of what lands in the docroot, e.g. www-data: with --chmod D2775,F664 the web server reads every file")
    .option("--run-timeout <duration>", "stop a run that takes longer than this plus 4s per MiB it downloads, changing nothing (exit 4; default: 10 x --interval, at least 10m; 0: none)")
    .action(async (source: string | undefined, docroot: string | undefined, _o: unknown, cmd: Command) => {
      const extra = (cmd.opts().source as string[] | undefined) ?? [];
      const sources = source ? [source, ...extra] : extra.length ? extra : undefined;
      await run("pull", cmd, { ...flagsOf(cmd), docroot, sources }, async (cfg, log, signal) => {
        const { pull } = await import("../commands/pull.ts");
        await pull(cfg, log, signal);
      });
    });

  publishOptions(httpOptions(common(program.command("sync"))))
    .description("two-way daemon for every node that may write: publish this docroot's changes and apply everyone else's (one ordered history, conflicts kept)")
    .argument("[docroot]", "local directory to keep in sync")
    .argument("[target]", "s3://bucket/prefix")
    .option("--owns <glob>", "publish only paths matching the glob (repeatable; default: everything); other local changes are reported, kept and undone", collect)
    .addOption(new Option("--conflict <rule>", "who wins a path changed here and elsewhere (default newer: the newer mtime; delete vs modify keeps the modification)").choices(["newer", "remote", "local"]))
    .option("--conflicts-dir <dir>", "where losing versions are kept, outside the docroot (default: <state dir>/sync-<id>/conflicts)")
    .option("--node-id <name>", "this node's name in conflict copies and the status (default: the host name)")
    .option("--verify", "at start, check every object of the generation this node converged to (one HEAD each) and upload again, from the docroot, any written over outside fansync")
    .option("--report", "write this node's status to <meta>nodes/<node-id>.json after each round, for `fansync status` (as pull --report)")
    .option("--chmod <rules>", "rsync-style modes for what lands in the docroot, e.g. D2775,F664 (D: directories, F: files; octal or chmod's u+w form)")
    .option("--group <group>", "group (name or gid) of what lands in the docroot, e.g. www-data: with --chmod D2775,F664 the web server reads every file")
    .option("--stats <duration>", "log a progress line (files, bytes, rate, ETA) this often while transferring; default 10s when stderr is not a terminal, 0: never")
    .option("--status-file <file>", "also write the JSON status here (and a one-line OK/ERROR companion .txt)")
    .option("--exclude <glob>", "neither publish nor apply paths matching the glob (repeatable)", collect)
    .option("--exclude-from <file>", "read exclude globs from a file, one per line")
    .option("--include <glob>", "re-include paths an exclude matched (repeatable)", collect)
    .option("--cache-control <glob=value>", "Cache-Control for paths matching the glob (repeatable; first match wins)", collect)
    .option("--max-delete <n|pct>", "refuse to publish or apply more deletions than this (default 50%)")
    .option("--force", "allow what the delete guard refuses")
    .option("-n, --dry-run", "plan one round and print it (what would be published, applied, removed and kept); change nothing and exit")
    .option("--retain <n>", "keep manifests and journals of this many generations (default 50)")
    .option("--delay <duration>", "quiet window after a local change before a round (default 500ms)")
    .option("--max-delay <duration>", "longest a change waits during continuous activity (default 5s)")
    .option("--interval <duration>", "poll the head this often (default 2s; 60s with --events)")
    .option("--events <queue-url>", "also start a round at once when this SQS queue (fed by the bucket's notification for the head) has a message; polling stays as the safety net (docs/events.md)")
    .option("--on-apply <command>", "after each round that applied another writer's generation, run this shell command with the paths it changed/deleted here as NDJSON on stdin")
    .option("--rescan-interval <duration>", "scan the whole docroot at least this often, catching events the watcher missed (default 1h)")
    .option("--signing-key <file>", "sign every generation this node publishes with this private key (its public half is trusted too)")
    .option("--trusted-key <key|file>", "apply and build on only generations signed by this public key (ed25519:… or a .pub file; repeatable)", collect)
    .option("--site <id>", "with --signing-key: the site id signatures are bound to")
    .action(async (docroot: string | undefined, target: string | undefined, _o: unknown, cmd: Command) => {
      await run("sync", cmd, { ...flagsOf(cmd), docroot, target }, async (cfg, log, signal) => {
        const { sync } = await import("../commands/sync.ts");
        await sync(cfg, log, signal);
      });
    });

  program.command("keygen")
    .description("make an ed25519 key pair for signed generations: the private key for the master, the public key for the nodes")
    .argument("<keyfile>", "where to write the private key (mode 0600); the public key goes to <keyfile>.pub")
    .action(async (keyfile: string, _o: unknown, cmd: Command) => {
      await run("keygen", cmd, {}, async () => {
        const { keygen } = await import("../commands/keygen.ts");
        await keygen(keyfile);
      });
    });

  program.command("completion")
    .description("print a shell completion script (bash or zsh), generated from the same option definitions as --help")
    .argument("<shell>", "bash or zsh")
    .action(async (shell: string) => {
      const docs = await import("./help-docs.ts");
      if (shell !== "bash" && shell !== "zsh") {
        process.stderr.write(`fansync: completion for ${JSON.stringify(shell)}: only bash and zsh\n`);
        process.exit(ExitCode.usage);
      }
      process.stdout.write(shell === "bash" ? docs.renderBashCompletion(program) : docs.renderZshCompletion(program));
    });

  // The manual page, for the release build (the .deb installs it as fansync(1)).
  program.command("manpage", { hidden: true })
    .action(async () => {
      const { renderManPage } = await import("./help-docs.ts");
      process.stdout.write(renderManPage(program, { version: BUILD_INFO.version, date: BUILD_INFO.buildDate === "unknown" ? new Date().toISOString().slice(0, 10) : BUILD_INFO.buildDate.slice(0, 10) }));
    });

  program.command("version")
    .description("print version, git commit, build date, Node.js version and platform (`--version` prints the version alone, for scripts)")
    .action(() => {
      process.stdout.write(formatVersion(BUILD_INFO));
    });

  registerEvents(program);
  registerFanout(program);
  registerDoctor(program);
  registerHistory(program);
  groupCommands(program);
  listCommonLast(program);
  program.addHelpText("after", PROGRAM_EPILOG);
  return program;
}

// Which heading each command is listed under in `fansync --help`, by who runs it.
const COMMAND_GROUPS: Readonly<Record<string, string>> = {
  push: "On the master:", watch: "On the master:",
  pull: "On each web node:",
  sync: "On every node that may write (two-way):",
  replicate: "Between regions:",
  status: "Operating:", doctor: "Operating:", events: "Operating:", log: "Operating:", rollback: "Operating:", keygen: "Operating:",
  demo: "Trying it out:",
};

function groupCommands(program: Command): void {
  for (const c of program.commands) {
    const g = COMMAND_GROUPS[c.name()];
    if (g) c.helpGroup(g);
  }
}

const PROGRAM_EPILOG = `
Examples:
  fansync demo                                        the whole topology on an embedded S3 server
  fansync doctor s3://site-primary/www                check credentials, access and the server first
  fansync push  /var/www/html s3://site-primary/www   publish once (like rsync -a --delete, or rclone sync, to a bucket)
  fansync watch /var/www/html s3://site-primary/www   keep publishing as files change (like lsyncd)
  fansync pull  s3://site-jp/www /var/www/html --source s3://site-primary/www --status-file /var/www/html/status.json
  fansync sync  /var/www/html s3://site-primary/www --owns 'uploads/**'   two-way: an app server publishing user uploads
  fansync status s3://site-primary/www s3://site-jp/www

Coming from rsync or rclone:
  - The master never pushes to nodes: it publishes generations to a bucket; each node pulls.
  - A no-op pull is one conditional GET (no listing, no stat of the tree); a change costs O(changes).
  - Nodes never see a half-written file: downloads are verified temp files renamed into place
    once every file of the generation arrived.
  - --delete is built in and guarded: --max-delete (default 50%) refuses a mass deletion
    unless --force; an empty docroot is never published.
  - --dry-run prints the plan; --exclude/--include take globs; --checksum with --verify re-hashes.
  - Credentials come from the AWS chain (env, profile, SSO, instance role), never from flags.

Exit codes: 0 ok, 1 unexpected, 2 usage, 3 config, 4 partial, 5 refused by the delete guard,
6 another writer won, 7 remote unreachable or refused, 8 integrity, 9 local I/O, 75 locked
(another run), 130 interrupted (SIGINT), 143 terminated (SIGTERM). \`fansync <command> --help\` for each command.`;

/** `events`: the notification → topic → queue plumbing of `pull --events` (docs/events.md). */
function registerEvents(program: Command): void {
  common(program.command("events"))
    .description("set up the events that wake nodes at once: the bucket's notification and topic, each node's queue (docs/events.md)")
    .argument("<action>", "setup (topic + bucket notification), register (this node's queue), unregister, check, or prune (expired self-registered queues)")
    .argument("[location]", "s3://bucket/prefix (setup, check)")
    .option("--topic <arn>", "register, prune: the topic (printed by setup)")
    .option("--queue <url>", "unregister, check: the node's queue")
    .option("--queue-name <name>", "register: the queue's name (default fansync-<hostname>)")
    .option("--expire-after <duration>", "register: `events prune` deletes the queue this long after a node last ran with it (default 7d; a running node refreshes it hourly)")
    .action(async (action: string, location: string | undefined, _o: unknown, cmd: Command) => {
      if (!["setup", "register", "unregister", "check", "prune"].includes(action)) {
        process.stderr.write(`fansync: unknown events action ${JSON.stringify(action)}: setup, register, unregister, check or prune\n`);
        process.exit(ExitCode.usage);
      }
      const { topic, queue, queueName, expireAfter, ...flags } = flagsOf(cmd);
      await run("events", cmd, { ...flags, target: location }, async (cfg, _log, signal) => {
        const { events } = await import("../commands/events.ts");
        return events(cfg, { action: action as "setup", location: cfg.target, topic: topic as string | undefined, queue: queue as string | undefined, queueName: queueName as string | undefined, expireAfter: expireAfter as string | undefined }, signal);
      });
    });
}

/** `doctor`: checks a location and the S3 server before first use. */
function registerDoctor(program: Command): void {
  common(program.command("doctor"))
    .description("check credentials, bucket access, the clock and what the S3 server supports (run it first on a new setup)")
    .argument("[target]", "s3://bucket/prefix")
    .option("--json", "print the checks as one JSON document")
    .option("--no-write", "skip the checks that write probe objects (for read-only credentials)")
    .option("--events <queue-url>", "also check events for this node's queue: the bucket's notification for the head, the topic, the subscription and a round trip (docs/events.md)")
    .action(async (target: string | undefined, _o: unknown, cmd: Command) => {
      const { json, write, ...flags } = flagsOf(cmd);
      await run("doctor", cmd, { ...flags, target }, async (cfg, log, signal) => {
        const { doctor } = await import("../commands/doctor.ts");
        return doctor(cfg, log, signal, { json: json === true, write: write !== false });
      });
    });
}

/** `replicate`, `status` and `demo` (regional fan-out), kept in one block. */
function registerFanout(program: Command): void {
  publishOptions(httpOptions(common(program.command("replicate"))))
    .description("copy each new generation of the primary location to regional locations (objects first, head last)")
    // Optional here: a config file may hold them (source, targets), so a unit runs only `--config`.
    .argument("[primary]", "s3://bucket/prefix of the primary (the uploader's target; config: source)")
    .argument("[regions...]", "s3://bucket/prefix of each region (config: targets)")
    .option("--watch", "keep running, polling the primary's head")
    .option("--no-watch", "run once even when the config file says watch: true")
    .option("--interval <duration>", "poll interval with --watch (default 2s; 60s with --events)")
    .option("--events <queue-url>", "with --watch: also start a round at once when this SQS queue (fed by the primary's notification for the head) has a message (docs/events.md)")
    .option("--multipart-threshold <size>", "streamed copies at least this big use multipart upload (default 8MiB)")
    .option("--part-size <size>", "multipart part size (default 8MiB)")
    .option("--retain <n>", "keep manifests and journals of this many generations in each region (default 50)")
    .option("--verify", "check the bytes of every object each region's head names (one GET each, hashed) and copy again any that holds other bytes")
    .option("--trusted-key <key|file>", "copy only primary generations signed by this public key (ed25519:… or a .pub file; repeatable)", collect)
    .option("--site <id>", "with --trusted-key: the site whose generations to copy (default: the first one verified, pinned for this run)")
    .action(async (primary: string | undefined, regions: string[], _o: unknown, cmd: Command) => {
      await run("replicate", cmd, { ...flagsOf(cmd), source: primary, targets: regions }, async (cfg, log, signal) => {
        const { replicate } = await import("../commands/replicate.ts");
        await replicate(cfg, log, signal);
      });
    });

  common(program.command("status"))
    .description("the fleet: each location's head and every node that reports there (or, without a location, this machine's local status files)")
    .argument("[locations...]", "s3://bucket/prefix of the primary, then any regions (nodes report with pull --report)")
    .option("--status-file <file>", "without a location: a puller's status file (pull --status-file)")
    .option("--stale-after <duration>", "a node silent for longer than this is shown SILENT (default 5m)")
    .option("--json", "print JSON")
    .addHelpText("after", "\nExit status: 0 all well; 4 a location is unreadable or a node reports ERROR or is SILENT.")
    .action(async (locations: string[], _o: unknown, cmd: Command) => {
      const { json, ...flags } = flagsOf(cmd);
      await run("status", cmd, { ...flags, ...(locations.length ? { targets: locations } : {}) }, async (cfg, _log, signal) => {
        const { status, fleetStatus } = await import("../commands/status.ts");
        return cfg.targets.length ? fleetStatus(cfg, cfg.targets, { json: json === true }, signal) : status(cfg, { json: json === true });
      });
    });

  program
    .command("demo")
    .description("run a primary, three regions, the uploader, the replicator and three pullers on an embedded S3 server, make edits and time them")
    .option("--dir <dir>", "where the demo's docroots, state and logs go (default: a temp directory, removed after a clean run)")
    .option("--keep-running", "leave everything running after the edits (Ctrl-C stops it)")
    .option("--keep", "keep the demo's folder (docroots, state, logs) after a clean run")
    .option("--http-port <port>", "port of the fleet status page on 127.0.0.1 (default: a free one)")
    .action(async (_o: unknown, cmd: Command) => {
      const { dir, keepRunning, keep, httpPort, ...flags } = cmd.opts();
      const port = httpPort === undefined ? undefined : Number(httpPort);
      if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
        process.stderr.write(`fansync: --http-port ${String(httpPort)} is not a port number (1-65535)\n`);
        process.exit(ExitCode.usage);
      }
      await run("demo", cmd, flags, async (_cfg, _log, signal) => {
        const { demo } = await import("../commands/demo.ts");
        return demo({ dir: dir as string | undefined, keepRunning: keepRunning === true, keep: keep === true, httpPort: port }, signal);
      });
    });
}

/** `log` and `rollback`: a location's retained generations, and publishing an old one again. */
function registerHistory(program: Command): void {
  common(program.command("log"))
    .description("list the retained generations of a location, newest first, with what each changed (read-only)")
    .argument("[location]", "s3://bucket/prefix")
    .option("--json", "print JSON (one line)")
    .option("--limit <n>", "show only the newest n generations")
    .action(async (location: string | undefined, _o: unknown, cmd: Command) => {
      // -v (every command's "more log lines") also lists each generation's changed paths here.
      const verbose = cmd.opts().verbose === true;
      const { json, limit, ...flags } = flagsOf(cmd);
      await run("log", cmd, { ...flags, target: location }, async (cfg, _log, signal) => {
        const { showLog } = await import("../commands/log.ts");
        await showLog(cfg, { json: json === true, verbose: verbose === true, limit: limit as string | undefined }, signal);
      });
    });

  publishOptions(common(program.command("rollback")))
    .description("publish a new generation (head + 1) whose content is that of a retained older generation")
    .argument("[location]", "s3://bucket/prefix")
    .option("--to <generation>", "the retained generation whose content to publish again (fansync log lists them)")
    .option("--from <dir>", "a directory holding old files (a backup, the master's docroot): used for what the bucket cannot give back")
    .option("--cache-control <glob=value>", "Cache-Control for restored paths matching the glob, as the uploader's (repeatable)", collect)
    .option("--multipart-threshold <size>", "files from --from at least this big use multipart upload (default 8MiB)")
    .option("--part-size <size>", "multipart part size (default 8MiB)")
    .option("--max-delete <n|pct>", "refuse to delete more than this many files or this share of the published files (default 50%)")
    .option("--force", "allow what the delete guard refuses")
    .option("-n, --dry-run", "print the plan and change nothing")
    .option("--retain <n>", "keep manifests and journals of this many generations (default 50; use the uploader's)")
    .option("--signing-key <file>", "sign the new generation with this private key (the uploader's); the retained generation must verify under its public half")
    .option("--trusted-key <key|file>", "restore only a retained generation signed by this public key (repeatable; for generations signed before a key rotation)", collect)
    .option("--site <id>", "with --signing-key: the site id (default: the location's s3:// URL; use the uploader's)")
    .addHelpText("after", `
Where the old bytes come from, in order: the old object version (versioned bucket), an object
now in the bucket with the same sha256 (server-side copy), a file with the same sha256 under
--from (uploaded). If any path has no source, nothing is changed and the command fails.

Stop the uploader first (systemctl stop fansync-watch): the rollback takes the uploader's write
lease and fails while an uploader holds it. A running uploader re-publishes the master's docroot
on its next change or rescan, undoing the rollback: keep it stopped, or restore the master's
docroot to the same generation before starting it again.`)
    .action(async (location: string | undefined, _o: unknown, cmd: Command) => {
      const { to, from, ...flags } = flagsOf(cmd);
      await run("rollback", cmd, { ...flags, target: location }, async (cfg, log, signal) => {
        const { rollbackCommand } = await import("../commands/rollback.ts");
        await rollbackCommand(cfg, { to: to as string | undefined, from: from as string | undefined }, log, signal);
      });
    });
}

// Not a top-level await: the release bundles this file as CommonJS (a Node single executable runs
// CommonJS only), where top-level await does not exist. run() exits the process itself.
void buildProgram().parseAsync(process.argv);
