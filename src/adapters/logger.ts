/** pino logger construction: JSON on stdout by default, pretty on a TTY or when asked. */
import pino, { type Logger } from "pino";

export type { Logger } from "pino";

/** Create the process logger. Sync writes so nothing is lost when the entry file exits. */
export function createLogger(opts: { level: string; format: "json" | "pretty" | undefined; name?: string }): Logger {
  const format = opts.format ?? (process.stdout.isTTY ? "pretty" : "json");
  const base = { level: opts.level, name: opts.name ?? "fansync", base: { pid: process.pid } };
  if (format === "pretty") {
    return pino(base, pino.transport({ target: "pino-pretty", options: { destination: 1, sync: true, ignore: "pid,hostname,name" } }));
  }
  return pino(base, pino.destination({ fd: 1, sync: true }));
}

/** A logger that discards everything (library use and tests). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
