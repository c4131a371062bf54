/** The coalescing wake-up (engine/wake.ts) and the event listener (engine/event-listener.ts) on an in-memory queue. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { EventQueue, QueueMessage } from "../../src/adapters/event-queue.ts";
import { EventListener } from "../../src/engine/event-listener.ts";
import { Wake } from "../../src/engine/wake.ts";
import { fakeLog } from "../helpers/fake-log.ts";

test("any number of fires during a run leave exactly one pending run", async () => {
  const w = new Wake();
  const signal = new AbortController().signal;
  for (let i = 0; i < 1000; i++) w.fire();
  assert.equal(await w.nap(60_000, signal), true, "the run the fires asked for, at once");
  // Nothing fired since: the next nap runs to its end (short here) and says it was a poll.
  assert.equal(await w.nap(5, signal), false);
});

test("a fire during a nap ends it at once; a stop ends it too", async () => {
  const w = new Wake();
  const ac = new AbortController();
  const napping = w.nap(60_000, ac.signal);
  w.fire();
  w.fire();
  assert.equal(await napping, true);
  assert.equal(await w.nap(1, ac.signal), false, "the second fire came during the same nap: no extra run");
  const stopped = w.nap(60_000, ac.signal);
  ac.abort();
  assert.equal(await stopped, false);
});

/** A queue scripted step by step: each receive takes the next step (messages, or an error to throw). */
function scriptedQueue(steps: (readonly string[] | Error)[], stop: AbortController): EventQueue & { removed: string[] } {
  let n = 0;
  const removed: string[] = [];
  return {
    url: "mem://q",
    removed,
    receive: async (): Promise<readonly QueueMessage[]> => {
      const step = steps[n++];
      if (step === undefined) {
        stop.abort();
        return [];
      }
      if (step instanceof Error) throw step;
      return step.map((body, i) => ({ handle: `h${n}-${i}`, body }));
    },
    remove: async (handles) => void removed.push(...handles),
  };
}

test("the listener: one hint per batch, messages deleted, garbage never parsed; a failing queue is reported, hinted once, and recovers", async () => {
  const stop = new AbortController();
  const gone = Object.assign(new Error("The specified queue does not exist."), { name: "QueueDoesNotExist", $metadata: { httpStatusCode: 400 } });
  const q = scriptedQueue([["not json", "{\"generation\": 99}", "\u0000"], [], gone, gone, ["x"]], stop);
  const { log, lines } = fakeLog();
  let hints = 0;
  const states: string[] = [];
  const l = new EventListener(q, () => {
    hints++;
    states.push(l.health.state);
  }, { log, signal: stop.signal, now: () => new Date() }, 1);
  await l.run(stop.signal);
  // Batch 1 → hint; failing → hint (look now, nap short); recovered → hint; batch "x" → hint.
  assert.equal(hints, 4);
  assert.deepEqual(states, ["listening", "failing", "listening", "listening"]);
  assert.deepEqual(q.removed, ["h1-0", "h1-1", "h1-2", "h5-0"]);
  assert.equal(l.health.messages, 4);
  assert.equal(l.health.state, "listening");
  assert.equal(lines.filter((x) => x.level === "error").length, 1, "reported once, not per retry");
  assert.ok(lines.some((x) => x.msg.includes("readable again")));
});

test("the listener pushes a self-registered queue's expiry forward at start and hourly, never per receive; a failing refresh is warned once and changes nothing else", async () => {
  const stop = new AbortController();
  // Ten receives, each taking 20 minutes of the fake clock: 3 h 20 min in all.
  let t = Date.parse("2026-01-01T00:00:00Z");
  const q = scriptedQueue(Array.from({ length: 10 }, () => []), stop);
  const refreshed: string[] = [];
  const timed = { ...q, receive: async (s: AbortSignal) => { t += 20 * 60_000; return q.receive(s); }, refreshExpiry: async (now: Date) => {
    refreshed.push(now.toISOString());
    return new Date(now.getTime() + 7 * 86_400_000).toISOString();
  } };
  const { log } = fakeLog();
  await new EventListener(timed, () => undefined, { log, signal: stop.signal, now: () => new Date(t) }, 1).run(stop.signal);
  assert.deepEqual(refreshed, ["2026-01-01T00:00:00.000Z", "2026-01-01T01:00:00.000Z", "2026-01-01T02:00:00.000Z", "2026-01-01T03:00:00.000Z"]);

  // Refusing (no sqs:TagQueue): one warning, the queue still listened to, every hint still given.
  const stop2 = new AbortController();
  const q2 = scriptedQueue([["a"], [], ["b"]], stop2);
  let t2 = 0;
  const denied = Object.assign(new Error("denied"), { name: "AccessDenied" });
  const { log: log2, lines } = fakeLog();
  let hints = 0;
  const l = new EventListener({ ...q2, receive: async (s: AbortSignal) => { t2 += 2 * 3_600_000; return q2.receive(s); }, refreshExpiry: async () => { throw denied; } }, () => hints++, { log: log2, signal: stop2.signal, now: () => new Date(t2) }, 1);
  await l.run(stop2.signal);
  assert.equal(hints, 2);
  assert.equal(l.health.state, "listening");
  assert.equal(lines.filter((x) => x.level === "warn" && x.msg.includes("expiry")).length, 1);
  assert.equal(lines.filter((x) => x.level === "error").length, 0);
});
