/**
 * `fansync demo`: wiring only. The demo itself (its embedded S3 server, the conditional-write gate in
 * front of it, the sample site and the monitor) lives in `src/demo/`, apart from the commands that
 * run against a real bucket; it is loaded on demand so no other command pays for it.
 */
import type { DemoOptions } from "../demo/run-demo.ts";

export type { DemoOptions };

/** Run the demo; returns the exit code. */
export async function demo(o: DemoOptions, signal: AbortSignal): Promise<number> {
  const { runDemo } = await import("../demo/run-demo.ts");
  return runDemo(o, signal);
}
