/** Waiting that a daemon's stop signal cuts short. */
import { setTimeout as delay } from "node:timers/promises";

/** Sleep `ms`, or less if `signal` aborts first; never rejects. */
export async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  await delay(ms, undefined, { signal }).catch(() => undefined);
}
