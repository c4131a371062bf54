/** Shared setup for integration tests: one server per test file, a bucket per test, CLI shortcuts. */
import { after, before } from "node:test";
import { type CliResult, runCli } from "./cli.ts";
import { startS3Server, type TestServer } from "./s3-server.ts";
import { tempDir } from "./tree.ts";

/** Per-file context: the server, and helpers bound to it. */
export interface Ctx {
  server: TestServer;
  /** `fansync <args>` against this server, with a test state dir. */
  cli(args: readonly string[], extraEnv?: Record<string, string>): Promise<CliResult>;
  /** The common flags: endpoint and JSON logs. */
  flags(stateDir: string): string[];
  tmp(tag: string): string;
}

/** Register before/after hooks that start and stop the server; returns the context (filled in `before`). */
export function useServer(): Ctx {
  const cleanups: (() => void)[] = [];
  const ctx = {} as Ctx;
  before(async () => {
    ctx.server = await startS3Server();
    ctx.flags = (stateDir) => ["--endpoint-url", ctx.server.endpoint, "--state-dir", stateDir, "--log-format", "json"];
    ctx.cli = (args, extraEnv) => runCli(args, extraEnv ? { env: extraEnv } : {});
    ctx.tmp = (tag) => {
      const t = tempDir(tag);
      cleanups.push(t.cleanup);
      return t.dir;
    };
  });
  after(async () => {
    await ctx.server?.stop();
    for (const c of cleanups) c();
  });
  return ctx;
}

/** Assert helper: a CLI run must have exited with `code`, else show its output. */
export function expectCode(r: CliResult, code: number): void {
  if (r.code !== code) throw new Error(`expected exit ${code}, got ${r.code} (${r.signal ?? ""})\nstdout:\n${r.stdout.slice(-3000)}\nstderr:\n${r.stderr.slice(-3000)}`);
}
