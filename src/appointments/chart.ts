/**
 * The missed-appointment trend per clinician or department (as the export is grouped) as line charts
 * a manager can read: the missed rate (top) and the clinician hours lost (bottom), one line per group
 * on a time axis: the groups with the most missed appointments, the rest summed as "other". A period
 * a group has no concluded appointment in is a gap in its line, not a straight line across. SVG
 * written by hand (one <g class="series"> per group and measure, so a reader or a test can find each
 * one), rasterised to PNG by resvg when the file name asks for it.
 */
import path from 'node:path';
import { CarepipeError } from '../errors.js';
import { writeOutputFile, type OutputFileOptions } from '../io/output-file.js';
import type { ImpactPeriod, ImpactRow } from './impact.js';

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

/** Lines drawn before the rest of the groups are summed as one "other" line. */
export const TOP_SERIES = 6;
export const OTHER_SERIES = 'other';

/**
 * Impact rows (one per group and period) → the two panels: missed rate in %, hours lost. The `top`
 * groups with the most missed appointments over the range keep their own line (ties by name); the
 * rest are summed per period into "other" (its rate is its missed over its appointments).
 */
export function impactPanels(rows: ImpactRow[], options: { top?: number; noGroup?: string } = {}): ChartPanel[] {
  const top = options.top ?? TOP_SERIES;
  const nameOf = (row: ImpactRow) => row.group ?? options.noGroup ?? '(no department)';
  const missedBy = new Map<string, number>();
  for (const row of rows) missedBy.set(nameOf(row), (missedBy.get(nameOf(row)) ?? 0) + row.missed);
  const ranked = [...missedBy].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([name]) => name);
  // "other" for one group would only rename it.
  const shown = new Set(ranked.length > top + 1 ? ranked.slice(0, top) : ranked);
  const totals = new Map<string, { name: string; period: string; appointments: number; missed: number; minutes: number }>();
  for (const row of rows) {
    const name = shown.has(nameOf(row)) ? nameOf(row) : OTHER_SERIES;
    const key = `${name}\u0000${row.period_start}`;
    const total = totals.get(key) ?? { name, period: row.period_start, appointments: 0, missed: 0, minutes: 0 };
    total.appointments += row.appointments;
    total.missed += row.missed;
    total.minutes += row.clinician_minutes_lost;
    totals.set(key, total);
  }
  // Lines in name order, as the CSV lists its groups; "other" last.
  const order = [...[...shown].sort((a, b) => a.localeCompare(b)), ...(shown.size < ranked.length ? [OTHER_SERIES] : [])];
  const rate = new Map<string, ChartSeries>(order.map((name) => [name, { name, points: [] }]));
  const hours = new Map<string, ChartSeries>(order.map((name) => [name, { name, points: [] }]));
  for (const t of totals.values()) {
    rate.get(t.name)!.points.push({ period: t.period, value: t.appointments === 0 ? 0 : (t.missed / t.appointments) * 100 });
    hours.get(t.name)!.points.push({ period: t.period, value: t.minutes / 60 });
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

/** The start of the period after `period` (YYYY-MM-DD). */
function nextPeriod(period: string, kind: ImpactPeriod): string {
  const d = new Date(`${period}T00:00:00Z`);
  if (kind === 'week') d.setUTCDate(d.getUTCDate() + 7);
  else d.setUTCMonth(d.getUTCMonth() + 1);
  return d.toISOString().slice(0, 10);
}

/** Every period from the first to the last in the data, with none left out. */
export function periodRange(periods: string[], kind: ImpactPeriod): string[] {
  if (periods.length === 0) return [];
  const sorted = [...periods].sort();
  const out: string[] = [];
  // Bounded: periods come from date_trunc, so each step lands on the next one of them.
  for (let p = sorted[0]!; p <= sorted[sorted.length - 1]! && out.length < 10_000; p = nextPeriod(p, kind)) out.push(p);
  return out;
}

/** Axis labels: at most about 10, every n-th period (a whole number of weeks, or 1, 2, 3, 6 or 12 months). */
export function axisLabels(periods: string[], kind: ImpactPeriod): string[] {
  const range = periodRange(periods, kind);
  const steps = kind === 'week' ? [1, 2, 4, 8, 13, 26, 52] : [1, 2, 3, 6, 12];
  const step = steps.find((n) => Math.ceil(range.length / n) <= 10) ?? Math.ceil(range.length / 10);
  return range.filter((_, i) => i % step === 0);
}

/** Runs of consecutive periods: a line is drawn through each run, with a gap between runs. */
function runs(points: ChartPoint[], kind: ImpactPeriod): ChartPoint[][] {
  const out: ChartPoint[][] = [];
  for (const point of points) {
    const last = out[out.length - 1];
    const previous = last?.[last.length - 1];
    if (previous && nextPeriod(previous.period, kind) === point.period) last!.push(point);
    else out.push([point]);
  }
  return out;
}

/**
 * Line charts stacked in one SVG document, sharing a time axis from the first period in the data to
 * the last. `period` says what one step of the axis is (gaps and labels follow it).
 */
export function lineChartSvg(title: string, panels: ChartPanel[], period: ImpactPeriod = 'month'): string {
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
  // "other" is the rest taken together: grey, so it does not read as one more clinician or department.
  const coloured = names.filter((n) => n !== OTHER_SERIES);
  const colour = (name: string) => (name === OTHER_SERIES ? '#999999' : COLOURS[coloured.indexOf(name) % COLOURS.length]!);
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
      for (const run of runs(points, period)) {
        if (run.length > 1) out.push(`<polyline fill="none" stroke-width="2" data-periods="${run.map((p) => p.period).join(' ')}" points="${run.map((p) => `${fmt(x(p.period))},${fmt(y(p.value))}`).join(' ')}"/>`);
      }
      for (const p of points) {
        out.push(`<circle cx="${fmt(x(p.period))}" cy="${fmt(y(p.value))}" r="3.5" data-period="${p.period}" data-value="${p.value.toFixed(2)}"/>`);
      }
      out.push('</g>');
    }
    out.push('</g>');
  });
  // Period labels under the last panel, evenly spaced in time (every n-th week or month), so they do not collide.
  const axisY = MARGIN.top + (panels.length - 1) * PANEL_HEIGHT + plotH;
  out.push('<g class="x-axis" text-anchor="end">');
  for (const label of axisLabels(periods, period)) {
    out.push(
      `<line x1="${fmt(x(label))}" x2="${fmt(x(label))}" y1="${axisY}" y2="${axisY + 5}" stroke="#333333"/>`,
      `<text transform="translate(${fmt(x(label))} ${axisY + 16}) rotate(-35)" data-period="${label}">${escapeXml(period === 'month' ? label.slice(0, 7) : label)}</text>`,
    );
  }
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
