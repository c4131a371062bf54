/** A logger that keeps what it was told, for engine tests that check what a job logged. */
import type { Logger } from "../../src/adapters/logger.ts";

/** One logged line. */
export interface LogLine {
  readonly level: "debug" | "info" | "warn" | "error";
  readonly msg: string;
  readonly fields: Record<string, unknown>;
}

/** A {@link Logger} stand-in and the lines it got. */
export function fakeLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: LogLine["level"]) => (fields: unknown, msg?: string) => {
    if (typeof fields === "string") lines.push({ level, msg: fields, fields: {} });
    else lines.push({ level, msg: msg ?? "", fields: (fields ?? {}) as Record<string, unknown> });
  };
  const log = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error"), fatal: at("error"), trace: () => undefined, child: () => log };
  return { log: log as unknown as Logger, lines };
}
