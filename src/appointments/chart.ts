/**
 * The missed-rate trend per department as a line chart: SVG written by hand (one <g> per series, so a
 * reader or a test can find each department), rasterised to PNG by resvg when the file asks for it.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CarepipeError } from '../errors.js';
import type { ImpactRow } from './impact.js';

export interface ChartSeries {
  name: string;
  points: { period: string; value: number }[];
}

const WIDTH = 880;
const HEIGHT = 480;
const MARGIN = { top: 56, right: 200, bottom: 72, left: 64 };
// Colour-blind-safe palette (Okabe–Ito), repeated when there are more departments.
const COLOURS = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#F0E442', '#000000'];

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Impact rows (grouped by department) to one series per department of missed rate in percent. */
export function missedRateSeries(rows: ImpactRow[]): ChartSeries[] {
  const series = new Map<string, ChartSeries>();
  for (const row of rows) {
    const name = row.group ?? '(no department)';
    if (!series.has(name)) series.set(name, { name, points: [] });
    series.get(name)!.points.push({ period: row.period_start, value: Number(row.missed_rate) * 100 });
  }
  return [...series.values()];
}

/** A line chart as an SVG document: x = periods in order, y = 0–100 %. */
export function lineChartSvg(title: string, yLabel: string, series: ChartSeries[]): string {
  const periods = [...new Set(series.flatMap((s) => s.points.map((p) => p.period)))].sort();
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (period: string) =>
    MARGIN.left + (periods.length <= 1 ? plotW / 2 : (periods.indexOf(period) / (periods.length - 1)) * plotW);
  const y = (value: number) => MARGIN.top + plotH - (Math.min(100, Math.max(0, value)) / 100) * plotH;
  const fmt = (n: number) => n.toFixed(1);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${MARGIN.left}" y="28" font-size="16" font-weight="bold">${escapeXml(title)}</text>`,
  );
  // Horizontal grid every 20 %.
  out.push('<g class="grid" stroke="#dddddd">');
  for (let v = 0; v <= 100; v += 20) {
    out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${fmt(y(v))}" y2="${fmt(y(v))}"/>`);
  }
  out.push('</g>', '<g class="y-axis" text-anchor="end">');
  for (let v = 0; v <= 100; v += 20) out.push(`<text x="${MARGIN.left - 8}" y="${fmt(y(v) + 4)}">${v}%</text>`);
  out.push(
    `<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(yLabel)}</text>`,
    '</g>',
    '<g class="x-axis" text-anchor="end">',
    `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${MARGIN.top + plotH}" y2="${MARGIN.top + plotH}" stroke="#333333"/>`,
  );
  // Label at most ~12 periods so labels do not collide.
  const step = Math.max(1, Math.ceil(periods.length / 12));
  periods.forEach((period, i) => {
    if (i % step !== 0) return;
    out.push(`<text transform="translate(${fmt(x(period))} ${MARGIN.top + plotH + 16}) rotate(-35)">${escapeXml(period)}</text>`);
  });
  out.push('</g>');
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const points = [...s.points].sort((a, b) => a.period.localeCompare(b.period));
    out.push(`<g class="series" data-series="${escapeXml(s.name)}" stroke="${colour}" fill="${colour}">`);
    out.push(`<title>${escapeXml(s.name)}</title>`);
    if (points.length > 1) {
      out.push(`<polyline fill="none" stroke-width="2" points="${points.map((p) => `${fmt(x(p.period))},${fmt(y(p.value))}`).join(' ')}"/>`);
    }
    for (const p of points) {
      out.push(`<circle cx="${fmt(x(p.period))}" cy="${fmt(y(p.value))}" r="3.5" data-period="${p.period}" data-value="${p.value.toFixed(2)}"/>`);
    }
    out.push('</g>');
    const ly = MARGIN.top + 8 + i * 22;
    const lx = MARGIN.left + plotW + 24;
    out.push(
      `<g class="legend"><line x1="${lx}" x2="${lx + 24}" y1="${ly}" y2="${ly}" stroke="${colour}" stroke-width="3"/>`,
      `<text x="${lx + 32}" y="${ly + 4}">${escapeXml(s.name)}</text></g>`,
    );
  });
  if (series.length === 0) {
    out.push(`<text x="${MARGIN.left + plotW / 2}" y="${MARGIN.top + plotH / 2}" text-anchor="middle">no concluded appointments in range</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** Write `svg` to `file`: as is for .svg, rasterised for .png. */
export async function writeChart(svg: string, file: string): Promise<void> {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.svg') {
    await writeFile(file, svg, 'utf8');
    return;
  }
  if (ext === '.png') {
    const { Resvg } = await import('@resvg/resvg-js');
    const png = new Resvg(svg, { background: '#ffffff', font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng();
    await writeFile(file, png);
    return;
  }
  throw new CarepipeError('USAGE', `--chart must name a .svg or .png file, not '${path.basename(file)}'`, { field: '--chart', file });
}
