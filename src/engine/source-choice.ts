/**
 * The puller's lag rule, with I/O: which source to read first this run. The no-op path stays one
 * conditional GET: the other sources' heads are looked at only every `checkEveryMs` (the time of
 * the last look is kept in the state directory), or while this node is on a fallback source.
 */
import { formatLocation } from "../core/location.ts";
import { chooseSource, orderFrom, type SourceChoice } from "../core/source-order.ts";
import { errorFields, type Logger } from "../adapters/logger.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { readJson, writeJson } from "../adapters/state-files.ts";
import { readHead } from "./generation-reader.ts";
import type { Source } from "./puller.ts";
import { readPullState } from "./pull-state.ts";

/** Order `sources` for this run (preferred first unless the lag rule or a fallback says otherwise). */
export async function orderSources(sources: readonly Source[], o: { state: StateDir; maxLag: number; checkEveryMs: number }, d: { log: Logger; signal: AbortSignal; now: () => Date }): Promise<{ sources: Source[]; choice: SourceChoice }> {
  const keep = { sources: [...sources], choice: { first: 0, reason: "preferred" } as SourceChoice };
  if (sources.length < 2) return keep;
  const state = await readPullState(o.state);
  const current = state ? sources.findIndex((s) => formatLocation(s.loc) === state.source) : -1;
  const peek = (s: Source) =>
    readHead(s.store, s.loc, d.signal).then(
      (h) => h?.head.generation ?? 0,
      (err: unknown) => {
        d.log.debug({ source: formatLocation(s.loc), ...errorFields(err) }, "could not read the head");
        return undefined;
      },
    );
  let heads: (number | undefined)[];
  if (current > 0) {
    // On a fallback: one extra GET per run (the preferred head) until we are back.
    heads = [await peek(sources[0] as Source)];
  } else {
    const file = o.state.lagCheck;
    const last = await readJson<{ at: number }>(file);
    const now = d.now().getTime();
    if (last && now - last.at < o.checkEveryMs && now >= last.at) return keep;
    heads = await Promise.all(sources.map(peek));
    await writeJson(file, { at: now });
  }
  const choice = chooseSource({ current, have: state?.generation ?? 0, heads, maxLag: o.maxLag });
  if (choice.first !== 0 || choice.reason !== "preferred") {
    // A switch is news; staying on a fallback is repeated every run and only logged at debug.
    d.log[choice.first === current ? "debug" : "info"]({ source: formatLocation((sources[choice.first] as Source).loc), reason: choice.reason, heads, have: state?.generation ?? 0, maxLag: o.maxLag }, "source chosen by the lag rule");
  }
  return { sources: orderFrom(sources, choice.first), choice };
}
