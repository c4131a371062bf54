// The ratio chart: an SVG built here (pure) and rasterised to PNG with resvg (no network, no browser).
import { writeFileSync } from "node:fs";
import type { BenchReport } from "./results.ts";
import { groupByKey, medianSeconds, formatNumber } from "./report.ts";

/** One bar: a tool's ratio in one scenario. */
export type Bar = { label: string; toolId: string; value: number };
/** Bars of one scenario. */
export type BarGroup = { title: string; bars: Bar[] };

const COLORS: Record<string, string> = {
  rclone: "#4c78a8",
  "rclone-fast-list": "#72b7b2",
  aws: "#f58518",
  s3cmd: "#54a24b",
  "sdk-loop": "#9d755d",
  "sdk-loop-nocrc": "#b279a2",
  "http-loop": "#bab0ac",
  fansync: "#e45756",
};

/**
 * Chooses what to plot: fansync time / peer time per scenario when fansync has figures; otherwise
 * each tool's time / the fastest tool's time, so the chart still says something about the peers.
 */
export function chartData(report: BenchReport): { mode: "fansync" | "fastest"; groups: BarGroup[] } {
  const hasFansync = report.rows.some((r) => r.toolId === "fansync" && r.key !== "startup" && medianSeconds(r) !== undefined);
  const groups: BarGroup[] = [];
  for (const [key, rows] of groupByKey(report.rows)) {
    if (key === "startup") continue;
    const title = rows[0]?.scenario ?? key;
    if (hasFansync) {
      const f = medianSeconds(rows.find((r) => r.toolId === "fansync"));
      if (f === undefined) continue;
      const bars = rows.flatMap((r) => {
        const t = medianSeconds(r);
        return r.toolId === "fansync" || t === undefined || t === 0 ? [] : [{ label: r.tool, toolId: r.toolId, value: f / t }];
      });
      if (bars.length > 0) groups.push({ title, bars });
    } else {
      const times = rows.flatMap((r) => {
        const t = medianSeconds(r);
        return t === undefined ? [] : [{ r, t }];
      });
      if (times.length === 0) continue;
      const best = Math.min(...times.map((x) => x.t));
      groups.push({ title, bars: times.map(({ r, t }) => ({ label: r.tool, toolId: r.toolId, value: best > 0 ? t / best : 1 })) });
    }
  }
  return { mode: hasFansync ? "fansync" : "fastest", groups };
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Horizontal bar chart on a log2 axis from 2^lo× to 2^hi× (default 1/16× … 16×), as an SVG document. */
export function renderChartSvg(groups: readonly BarGroup[], title: string, axisLabel: string, lo = -4, hi = 4): string {
  const W = 980;
  const labelW = 190;
  const plotX = labelW + 10;
  const plotW = W - plotX - 70;
  const barH = 14;
  const groupGap = 26;
  const top = 64;
  const x = (v: number): number => {
    const l = Math.max(lo, Math.min(hi, Math.log2(v)));
    return plotX + ((l - lo) / (hi - lo)) * plotW;
  };
  // A white halo keeps labels readable where they cross grid lines.
  const halo = `stroke="#fff" stroke-width="3" paint-order="stroke"`;
  let y = top;
  const parts: string[] = [];
  for (const g of groups) {
    parts.push(`<text x="${plotX}" y="${y + 12}" font-size="13" font-weight="bold" fill="#222" ${halo}>${esc(g.title)}</text>`);
    y += 18;
    for (const b of g.bars) {
      const x0 = x(1);
      const x1 = x(b.value);
      const color = COLORS[b.toolId] ?? "#888";
      const l2 = Math.log2(b.value);
      const clipped = l2 > hi ? " ▶" : l2 < lo ? " ◀" : "";
      parts.push(`<text x="${labelW}" y="${y + barH - 3}" font-size="12" text-anchor="end" fill="#333">${esc(b.label)}</text>`);
      parts.push(`<rect x="${Math.min(x0, x1).toFixed(1)}" y="${y}" width="${Math.max(1, Math.abs(x1 - x0)).toFixed(1)}" height="${barH}" fill="${color}"/>`);
      const tx = b.value >= 1 ? x1 + 4 : x1 - 4;
      parts.push(`<text x="${tx.toFixed(1)}" y="${y + barH - 3}" font-size="11" text-anchor="${b.value >= 1 ? "start" : "end"}" fill="#222" ${halo}>${formatNumber(b.value)}×${clipped}</text>`);
      y += barH + 4;
    }
    y += groupGap - 4;
  }
  const bottom = y;
  const H = bottom + 50;
  const ticks: string[] = [];
  for (let l = lo; l <= hi; l++) {
    const v = 2 ** l;
    const tx = x(v);
    ticks.push(`<line x1="${tx.toFixed(1)}" y1="${top - 6}" x2="${tx.toFixed(1)}" y2="${bottom}" stroke="${l === 0 ? "#000" : "#ddd"}" stroke-width="${l === 0 ? 1.5 : 1}"/>`);
    const lab = v >= 1 ? `${v}×` : `1/${1 / v}×`;
    ticks.push(`<text x="${tx.toFixed(1)}" y="${bottom + 16}" font-size="11" text-anchor="middle" fill="#444">${lab}</text>`);
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="24" font-size="16" font-weight="bold" text-anchor="middle" fill="#111">${esc(title)}</text>`,
    `<text x="${W / 2}" y="44" font-size="12" text-anchor="middle" fill="#555">${esc(axisLabel)}</text>`,
    ...ticks,
    ...parts,
    `<text x="${W / 2}" y="${bottom + 36}" font-size="11" text-anchor="middle" fill="#555">log scale; bars beyond the axis are clipped and marked ▶ or ◀</text>`,
    groups.length === 0 ? `<text x="${W / 2}" y="${top + 20}" font-size="13" text-anchor="middle">no data</text>` : "",
    `</svg>`,
  ].join("\n");
}

/** Builds the chart of a report and writes it as SVG and as PNG. */
export async function writeChart(report: BenchReport, pngPath: string, svgPath: string): Promise<void> {
  const { mode, groups } = chartData(report);
  const svg =
    mode === "fansync"
      ? renderChartSvg(groups, `fansync time / peer time (BENCH_SCALE=${report.scale})`, "below 1× fansync is faster; median of runs")
      : renderChartSvg(groups, `Time relative to the fastest tool (BENCH_SCALE=${report.scale}); fansync not built`, "1× = fastest tool in the scenario; median of runs", 0, 5);
  writeFileSync(svgPath, svg);
  // Imported lazily: the native binding is only needed when a chart is actually drawn.
  const { Resvg } = await import("@resvg/resvg-js");
  const png = new Resvg(svg, {
    background: "#ffffff",
    fitTo: { mode: "width", value: 980 },
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
  })
    .render()
    .asPng();
  writeFileSync(pngPath, png);
}
