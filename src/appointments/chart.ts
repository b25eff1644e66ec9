/**
 * The missed-appointment trend per department as line charts a manager can read: the missed rate
 * (top) and the clinician hours lost (bottom), one line per department on a time axis. SVG written by
 * hand (one <g class="series"> per department and measure, so a reader or a test can find each one),
 * rasterised to PNG by resvg when the file name asks for it.
 */
import path from 'node:path';
import { CarepipeError } from '../errors.js';
import { writeOutputFile, type OutputFileOptions } from '../io/output-file.js';
import type { ImpactRow } from './impact.js';

export interface ChartPoint {
  /** YYYY-MM-DD, start of the period */
  period: string;
  value: number;
}

export interface ChartSeries {
  name: string;
  points: ChartPoint[];
}

export interface ChartPanel {
  /** Machine name of the measure, written as `data-measure`. */
  measure: string;
  label: string;
  /** Upper bound of the y axis (0 is the lower). */
  max: number;
  unit: string;
  series: ChartSeries[];
}

const WIDTH = 900;
const PANEL_HEIGHT = 260;
const MARGIN = { top: 64, right: 210, bottom: 76, left: 72, gap: 48 };
// Colour-blind-safe palette (Okabe–Ito), repeated when there are more departments.
const COLOURS = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#F0E442', '#000000'];

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Impact rows grouped by department → the two panels: missed rate in %, hours lost. */
export function impactPanels(rows: ImpactRow[]): ChartPanel[] {
  const rate = new Map<string, ChartSeries>();
  const hours = new Map<string, ChartSeries>();
  for (const row of rows) {
    const name = row.group ?? '(no department)';
    if (!rate.has(name)) rate.set(name, { name, points: [] });
    if (!hours.has(name)) hours.set(name, { name, points: [] });
    rate.get(name)!.points.push({ period: row.period_start, value: Number(row.missed_rate) * 100 });
    hours.get(name)!.points.push({ period: row.period_start, value: row.clinician_minutes_lost / 60 });
  }
  const maxHours = Math.max(1, ...[...hours.values()].flatMap((s) => s.points.map((p) => p.value)));
  return [
    { measure: 'missed_rate', label: 'missed rate (% of concluded appointments)', max: 100, unit: '%', series: [...rate.values()] },
    { measure: 'hours_lost', label: 'clinician hours lost', max: niceCeiling(maxHours), unit: 'h', series: [...hours.values()] },
  ];
}

/** 1, 2 or 5 times a power of ten, at or above `value`: round numbers for the axis. */
function niceCeiling(value: number): number {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

const day = (period: string) => Date.parse(`${period}T00:00:00Z`);

/** Line charts stacked in one SVG document, sharing a time axis over every period in the data. */
export function lineChartSvg(title: string, panels: ChartPanel[]): string {
  const periods = [...new Set(panels.flatMap((p) => p.series.flatMap((s) => s.points.map((pt) => pt.period))))].sort();
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = PANEL_HEIGHT - MARGIN.gap;
  const height = MARGIN.top + panels.length * PANEL_HEIGHT + MARGIN.bottom - MARGIN.gap;
  const first = periods.length > 0 ? day(periods[0]!) : 0;
  const span = periods.length > 1 ? day(periods[periods.length - 1]!) - first : 0;
  // Position by date, so a gap of three months looks like one.
  const x = (period: string) => MARGIN.left + (span === 0 ? plotW / 2 : ((day(period) - first) / span) * plotW);
  const fmt = (n: number) => n.toFixed(1);
  const names = [...new Set(panels.flatMap((p) => p.series.map((s) => s.name)))];
  const colour = (name: string) => COLOURS[names.indexOf(name) % COLOURS.length]!;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${MARGIN.left}" y="28" font-size="16" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  panels.forEach((panel, index) => {
    const top = MARGIN.top + index * PANEL_HEIGHT;
    const y = (value: number) => top + plotH - (Math.min(panel.max, Math.max(0, value)) / panel.max) * plotH;
    out.push(`<g class="panel" data-measure="${panel.measure}">`, '<g class="grid" stroke="#dddddd">');
    for (let i = 0; i <= 4; i += 1) {
      out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${fmt(y((panel.max * i) / 4))}" y2="${fmt(y((panel.max * i) / 4))}"/>`);
    }
    out.push('</g>', '<g class="y-axis" text-anchor="end">');
    for (let i = 0; i <= 4; i += 1) {
      const v = (panel.max * i) / 4;
      out.push(`<text x="${MARGIN.left - 8}" y="${fmt(y(v) + 4)}">${Number.isInteger(v) ? v : v.toFixed(1)}${panel.unit}</text>`);
    }
    out.push(
      '</g>',
      `<text x="${MARGIN.left}" y="${top - 12}" font-weight="bold">${escapeXml(panel.label)}</text>`,
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333333"/>`,
    );
    for (const s of panel.series) {
      const points = [...s.points].sort((a, b) => a.period.localeCompare(b.period));
      out.push(`<g class="series" data-measure="${panel.measure}" data-series="${escapeXml(s.name)}" stroke="${colour(s.name)}" fill="${colour(s.name)}">`);
      out.push(`<title>${escapeXml(s.name)}</title>`);
      if (points.length > 1) {
        out.push(`<polyline fill="none" stroke-width="2" points="${points.map((p) => `${fmt(x(p.period))},${fmt(y(p.value))}`).join(' ')}"/>`);
      }
      for (const p of points) {
        out.push(`<circle cx="${fmt(x(p.period))}" cy="${fmt(y(p.value))}" r="3.5" data-period="${p.period}" data-value="${p.value.toFixed(2)}"/>`);
      }
      out.push('</g>');
    }
    out.push('</g>');
  });
  // Period labels under the last panel; at most about 12, so they do not collide.
  const axisY = MARGIN.top + (panels.length - 1) * PANEL_HEIGHT + plotH;
  const step = Math.max(1, Math.ceil(periods.length / 12));
  out.push('<g class="x-axis" text-anchor="end">');
  periods.forEach((period, i) => {
    if (i % step === 0) out.push(`<text transform="translate(${fmt(x(period))} ${axisY + 16}) rotate(-35)">${escapeXml(period)}</text>`);
  });
  out.push('</g>', '<g class="legend">');
  names.forEach((name, i) => {
    const ly = MARGIN.top + 8 + i * 22;
    const lx = MARGIN.left + plotW + 24;
    out.push(
      `<line x1="${lx}" x2="${lx + 24}" y1="${ly}" y2="${ly}" stroke="${colour(name)}" stroke-width="3"/>`,
      `<text x="${lx + 32}" y="${ly + 4}">${escapeXml(name)}</text>`,
    );
  });
  out.push('</g>');
  if (periods.length === 0) {
    out.push(`<text x="${MARGIN.left + plotW / 2}" y="${MARGIN.top + plotH / 2}" text-anchor="middle">no concluded appointments in range</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** Write `svg` to `file`: as is for .svg, rasterised for .png; atomically, mode as in io/output-file.ts. */
export async function writeChart(svg: string, file: string, output: OutputFileOptions = {}): Promise<void> {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.svg') {
    await writeOutputFile(file, svg, output);
    return;
  }
  if (ext === '.png') {
    const { Resvg } = await import('@resvg/resvg-js');
    const png = new Resvg(svg, { background: '#ffffff', font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng();
    await writeOutputFile(file, png, output);
    return;
  }
  throw new CarepipeError('USAGE', `--chart must name a .svg or .png file, not '${path.basename(file)}'`, { field: '--chart', file });
}
