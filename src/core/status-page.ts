/**
 * The daemons' HTML status page, rendered on the server as one self-contained document (no script,
 * no external asset: it works from a bastion with `curl` or a locked-down browser). Everything that
 * comes from the bucket (node names, errors, URLs) is escaped: a report is someone else's text.
 */
import type { HealthVerdict, SelfState } from "./health.ts";
import { type FleetView, type NodeRow } from "./node-report.ts";
import { formatAge, formatBytes } from "./units.ts";

/** One sample of the lag chart: seconds behind, per node, at time `t` (ms). */
export interface LagSample {
  readonly t: number;
  readonly lags: Readonly<Record<string, number>>;
}

/** Heads as the page shows them (a subset of the fleet read). */
export interface PageLocation {
  readonly url: string;
  readonly generation: number | null;
  readonly time: string | null;
  readonly files: number | null;
  readonly bytes: number | null;
  readonly error: string | null;
}

/** Everything the page shows. */
export interface StatusPageModel {
  readonly host: string;
  readonly version: string;
  readonly now: number;
  readonly self: SelfState;
  /** /healthz (serving) and /readyz (in step with the source). */
  readonly health: HealthVerdict;
  readonly readiness: HealthVerdict;
  readonly locations: readonly PageLocation[];
  readonly fleet: FleetView | undefined;
  /** When the fleet was last read, and what went wrong if it could not be. */
  readonly fleetAt: number | null;
  readonly fleetError: string | null;
  readonly history: readonly LagSample[];
  readonly windowMs: number;
  readonly refreshSeconds: number;
}

/** Escape text for HTML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string);
}

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const STATUS_CLASS: Record<string, string> = { OK: "ok", STALE: "warn", ERROR: "bad", SILENT: "bad", STARTING: "warn", LAGGING: "warn", STUCK: "bad", DEGRADED: "warn", EMPTY: "bad" };

/** Render the whole page. */
export function renderStatusPage(m: StatusPageModel): string {
  const e = escapeHtml;
  const s = m.self;
  const ago = (iso: string | null) => (iso ? `${formatAge((m.now - Date.parse(iso)) / 1000)} ago` : "never");
  const badge = (word: string) => `<span class="badge ${STATUS_CLASS[word] ?? "warn"}">${e(word)}</span>`;
  const healthWord = m.health.word;
  const rows = (m.fleet?.nodes ?? []).map((n: NodeRow) =>
    `<tr><td>${e(n.node)}</td><td>${badge(n.status)}</td><td class="num">${n.generation}</td><td class="num">${n.behind}</td><td class="num">${e(formatAge(n.lagSeconds))}</td>` +
    `<td>${e(ago(n.lastSuccess))}</td><td>${e(formatAge(n.reportAgeSeconds))} ago</td><td class="url">${e(n.source)}</td><td class="err">${e(n.lastError ?? "")}</td></tr>`,
  );
  const locRows = m.locations.map((l) =>
    l.error
      ? `<tr><td class="url">${e(l.url)}</td><td colspan="3">${badge("ERROR")} ${e(l.error)}</td></tr>`
      : `<tr><td class="url">${e(l.url)}</td><td class="num">${l.generation ?? 0}</td><td>${e(ago(l.time))}</td><td class="num">${l.files ?? 0} files, ${e(formatBytes(l.bytes ?? 0))}</td></tr>`,
  );
  const c = m.fleet?.counts;
  const fleetNote = m.fleetError
    ? `<p class="err">could not read the fleet: ${e(m.fleetError)}</p>`
    : m.fleetAt === null
      ? `<p class="muted">fleet not read yet</p>`
      : `<p class="muted">${m.fleet?.nodes.length ?? 0} nodes: ${c?.OK ?? 0} OK, ${c?.STALE ?? 0} STALE, ${c?.ERROR ?? 0} ERROR, ${c?.SILENT ?? 0} SILENT · read ${e(formatAge((m.now - m.fleetAt) / 1000))} ago</p>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="${m.refreshSeconds}">
<title>fansync ${e(s.role)} · ${e(healthWord)} · ${e(m.host)}</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#111827;background:#f9fafb}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.muted{color:#6b7280} .err{color:#b91c1c;max-width:32em;overflow-wrap:anywhere}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 16px;margin:8px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:8px}
.kv b{display:block;font-size:22px} table{border-collapse:collapse;background:#fff;border:1px solid #e5e7eb;border-radius:8px}
th,td{padding:6px 10px;border-bottom:1px solid #f3f4f6;text-align:left;vertical-align:top} th{font-size:12px;color:#6b7280;text-transform:uppercase}
td.num{text-align:right;font-variant-numeric:tabular-nums} td.url{font-family:ui-monospace,monospace;font-size:12px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.ok{background:#dcfce7;color:#166534} .warn{background:#fef3c7;color:#92400e} .bad{background:#fee2e2;color:#991b1b}
svg text{font:11px system-ui,sans-serif;fill:#4b5563}
</style></head><body>
<h1>fansync ${e(s.role)} ${badge(healthWord)}</h1>
<div class="muted">${e(m.host)} · fansync ${e(m.version)} · ${e(s.detail)}</div>
<div class="card grid" id="self">
<div class="kv">generation<b>${s.generation}</b></div>
<div class="kv">head<b>${s.headGeneration}</b></div>
<div class="kv">lag<b>${e(formatAge(s.lagSeconds))}</b></div>
<div class="kv">last success<b>${e(ago(s.lastSuccess))}</b></div>
<div class="kv">health<b>${e(healthWord)}</b><span class="muted">${e(m.health.text)}</span></div>
<div class="kv">source<b>${e(m.readiness.word)}</b><span class="muted">${e(m.readiness.text)}</span></div>
</div>
${s.lastError ? `<div class="card err">last error: ${e(s.lastError)}</div>` : ""}
<h2>Locations</h2>
<table id="locations"><thead><tr><th>location</th><th>generation</th><th>published</th><th>content</th></tr></thead><tbody>
${locRows.join("\n")}
</tbody></table>
<h2>Fleet</h2>
${fleetNote}
<table id="fleet"><thead><tr><th>node</th><th>status</th><th>gen</th><th>behind</th><th>lag</th><th>last ok</th><th>reported</th><th>source</th><th>last error</th></tr></thead><tbody>
${rows.join("\n") || `<tr><td colspan="9" class="muted">no node has reported (pullers report with <code>fansync pull --report</code>)</td></tr>`}
</tbody></table>
<h2>Propagation lag per node (seconds behind the newest head), up to the last ${Math.round(m.windowMs / 60_000)} minutes</h2>
<div class="card">${renderLagChart(m.history, m.now, m.windowMs)}</div>
<p class="muted"><a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a> · <a href="/status.json">/status.json</a> · refreshes every ${m.refreshSeconds}s</p>
</body></html>
`;
}

/** Lines of lag (seconds) per node over the window, as inline SVG with axes and a legend. */
export function renderLagChart(history: readonly LagSample[], now: number, windowMs: number): string {
  const W = 760, H = 240, L = 48, R = 150, T = 12, B = 28;
  const inWindow = history.filter((h) => h.t >= now - windowMs && h.t <= now);
  // The axis spans the last hour, or less while the daemon has been up for less (at least a minute):
  // a young daemon's samples would otherwise be a sliver at the right edge.
  const oldest = inWindow[0]?.t ?? now;
  const span = Math.min(windowMs, Math.max(60_000, now - oldest));
  const from = now - span;
  const samples = inWindow.filter((h) => h.t >= from);
  const names = [...new Set(samples.flatMap((h) => Object.keys(h.lags)))].sort();
  if (samples.length === 0 || names.length === 0) {
    return `<svg id="lag-chart" width="${W}" height="60" role="img" aria-label="no lag samples yet"><text x="8" y="32">no samples yet: the chart fills as nodes report</text></svg>`;
  }
  const maxLag = Math.max(1, ...samples.flatMap((h) => Object.values(h.lags)));
  const top = niceCeil(maxLag);
  const x = (t: number) => L + ((t - from) / span) * (W - L - R);
  const y = (v: number) => T + (1 - Math.min(v, top) / top) * (H - T - B);
  const parts: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    const label = v % 1 !== 0 ? `${v.toFixed(1)}s` : formatAge(v);
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e5e7eb"/>`, `<text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${escapeHtml(label)}</text>`);
  }
  for (let i = 0; i <= 6; i++) {
    const t = from + (span * i) / 6;
    const ago = Math.round((now - t) / 1000);
    parts.push(`<text x="${x(t).toFixed(1)}" y="${H - 8}" text-anchor="middle">${ago === 0 ? "now" : `-${escapeHtml(formatAge(ago))}`}</text>`);
  }
  names.forEach((name, i) => {
    const color = COLORS[i % COLORS.length] as string;
    const pts = samples.filter((h) => h.lags[name] !== undefined).map((h) => `${x(h.t).toFixed(1)},${y(h.lags[name] as number).toFixed(1)}`);
    if (pts.length === 1) parts.push(`<circle cx="${pts[0]?.split(",")[0]}" cy="${pts[0]?.split(",")[1]}" r="3" fill="${color}"/>`);
    else parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(" ")}"/>`);
    const ly = T + 14 + i * 16;
    if (ly < H - B) parts.push(`<rect x="${W - R + 12}" y="${ly - 9}" width="10" height="10" fill="${color}"/>`, `<text x="${W - R + 28}" y="${ly}">${escapeHtml(name.length > 18 ? name.slice(0, 17) + "…" : name)}</text>`);
  });
  parts.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#9ca3af"/>`, `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#9ca3af"/>`);
  return `<svg id="lag-chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="propagation lag per node, seconds">${parts.join("")}</svg>`;
}

/** 1, 2, 5 × 10^n at or above v: round axis tops. */
function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
