/**
 * `--on-publish CMD` (writers) and `--on-apply CMD` (nodes): after each generation published or
 * applied, the command runs with the generation's changed and deleted paths as NDJSON on stdin,
 * one line per path: {"generation":7,"location":"s3://b/www/","op":"put"|"delete","path":"a/b.html"}
 * (and FANSYNC_GENERATION, FANSYNC_LOCATION, FANSYNC_HOOK in its environment), for a purge of
 * another CDN (Fastly, Varnish, nginx) or a reload.
 * - Runs one at a time, in order, on their own queue: the next generation never waits for a hook.
 * - Never twice for one generation: the last generation hooked per location is recorded in the
 *   job's state directory before the hook starts (at most once, even across a restart or a crash).
 * - Its exit status is logged; a hook still running after the timeout is killed with its group.
 * - A generation that changed nothing (a heartbeat) runs no hook.
 */
import { runHookProcess } from "../adapters/hook-process.ts";
import { readJson, writeJson } from "../adapters/state-files.ts";
import type { GenerationDone, JobDeps } from "./job-deps.ts";
import { errorFields } from "../adapters/logger.ts";

/** One hook: what runs, how long it may, and where its record is kept. */
export interface HookOptions {
  /** "on-publish" or "on-apply" (the log's and the environment's name for it). */
  readonly name: "on-publish" | "on-apply";
  readonly command: string;
  readonly timeoutMs: number;
  /** The state file recording the last generation hooked, per location. */
  readonly recordFile: string;
  /** The environment a hook inherits (fansync's own, as the CLI hands it over); the FANSYNC_* variables are added. */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** The NDJSON a hook reads for one generation. */
export function hookInput(g: GenerationDone): string {
  const line = (op: "put" | "delete", path: string) => JSON.stringify({ generation: g.generation, location: g.location, op, path }) + "\n";
  return g.changed.map((p) => line("put", p)).join("") + g.deleted.map((p) => line("delete", p)).join("");
}

/** Runs one hook after each generation; `notify` queues, `flush` waits for the queue. */
export class HookRunner {
  private readonly o: HookOptions;
  private readonly d: JobDeps;
  private queue: Promise<void> = Promise.resolve();
  private record: Record<string, number> | undefined;

  constructor(opts: HookOptions, deps: JobDeps) {
    this.o = opts;
    this.d = deps;
  }

  /** A generation was published or applied. */
  notify(g: GenerationDone): void {
    if (g.changed.length === 0 && g.deleted.length === 0) return;
    this.queue = this.queue.then(() => this.run(g)).catch((err: unknown) => this.d.log.error({ hook: this.o.name, ...errorFields(err) }, "hook not run"));
  }

  /** Wait for every queued hook to finish. */
  async flush(): Promise<void> {
    await this.queue;
  }

  private async run(g: GenerationDone): Promise<void> {
    const { log } = this.d;
    this.record ??= (await readJson<Record<string, number>>(this.o.recordFile)) ?? {};
    const done = this.record[g.location] ?? 0;
    if (g.generation <= done) {
      log.info({ hook: this.o.name, generation: g.generation, last: done }, "hook already ran for this generation: not run again");
      return;
    }
    // Recorded before it runs: a crash during the hook must not run it a second time.
    this.record = { ...this.record, [g.location]: g.generation };
    await writeJson(this.o.recordFile, this.record);
    const r = await runHookProcess(this.o.command, hookInput(g), { ...this.o.env, FANSYNC_GENERATION: String(g.generation), FANSYNC_LOCATION: g.location, FANSYNC_HOOK: this.o.name }, this.o.timeoutMs);
    const fields = { hook: this.o.name, generation: g.generation, exitCode: r.code, signal: r.signal ?? undefined, durationMs: r.durationMs, output: r.output.trim().slice(-500) || undefined };
    if (r.timedOut) log.error({ ...fields, timeoutMs: this.o.timeoutMs }, "hook timed out and was killed");
    else if (r.code === 0) log.info(fields, "hook ran");
    else log.error(fields, "hook failed");
  }
}
