// Line charts as standalone SVG, enough for the report: numeric x and y axes (each linear or log
// scale), one polyline per series with markers, a legend. No dependency, deterministic output.

export interface Series {
  name: string;
  /** Points with a missing y (a timeout, a skipped run) are left out of the line. */
  points: Array<{ x: number; y: number | undefined }>;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  series: Series[];
}

const WIDTH = 720;
const HEIGHT = 420;
const MARGIN = { left: 78, right: 200, top: 40, bottom: 56 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2'];

const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** 1k, 10k, 2.5, 0.1 ... short labels for tick values. */
export function formatTick(value: number): string {
  if (value >= 1e6) return `${+(value / 1e6).toPrecision(3)}M`;
  if (value >= 1e3) return `${+(value / 1e3).toPrecision(3)}k`;
  return `${+value.toPrecision(3)}`;
}

interface Axis {
  toPixel(value: number): number;
  ticks: number[];
}

function axis(values: number[], log: boolean, pixelFrom: number, pixelTo: number): Axis {
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (log) {
    low = 10 ** Math.floor(Math.log10(low));
    high = 10 ** Math.ceil(Math.log10(high));
    if (low === high) high = low * 10;
    const ticks: number[] = [];
    for (let tick = low; tick <= high * 1.0001; tick *= 10) ticks.push(tick);
    const scale = (value: number) => (Math.log10(value) - Math.log10(low)) / (Math.log10(high) - Math.log10(low));
    return { toPixel: (value) => pixelFrom + scale(value) * (pixelTo - pixelFrom), ticks };
  }
  low = Math.min(0, low);
  if (high === low) high = low + 1;
  const step = niceStep((high - low) / 5);
  high = Math.ceil(high / step) * step;
  const ticks: number[] = [];
  for (let tick = low; tick <= high + step / 2; tick += step) ticks.push(tick);
  return { toPixel: (value) => pixelFrom + ((value - low) / (high - low)) * (pixelTo - pixelFrom), ticks };
}

function niceStep(rough: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const normalized = rough / magnitude;
  return (normalized <= 1 ? 1 : normalized <= 2 ? 2 : normalized <= 5 ? 5 : 10) * magnitude;
}

export function lineChart(spec: ChartSpec): string {
  const defined = spec.series.flatMap((series) => series.points.filter((point): point is { x: number; y: number } => point.y !== undefined && point.y > 0));
  if (defined.length === 0) return '';
  const plot = { left: MARGIN.left, right: WIDTH - MARGIN.right, top: MARGIN.top, bottom: HEIGHT - MARGIN.bottom };
  const x = axis(defined.map((point) => point.x), spec.xLog ?? false, plot.left, plot.right);
  const y = axis(defined.map((point) => point.y), spec.yLog ?? false, plot.bottom, plot.top);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2 - MARGIN.right / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(spec.title)}</text>`,
  ];
  for (const tick of x.ticks) {
    const px = x.toPixel(tick).toFixed(1);
    parts.push(`<line x1="${px}" y1="${plot.top}" x2="${px}" y2="${plot.bottom}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${px}" y="${plot.bottom + 18}" text-anchor="middle">${formatTick(tick)}</text>`);
  }
  for (const tick of y.ticks) {
    const py = y.toPixel(tick).toFixed(1);
    parts.push(`<line x1="${plot.left}" y1="${py}" x2="${plot.right}" y2="${py}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${plot.left - 8}" y="${py}" text-anchor="end" dominant-baseline="middle">${formatTick(tick)}</text>`);
  }
  parts.push(`<rect x="${plot.left}" y="${plot.top}" width="${plot.right - plot.left}" height="${plot.bottom - plot.top}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${(plot.left + plot.right) / 2}" y="${HEIGHT - 14}" text-anchor="middle">${escapeXml(spec.xLabel)}</text>`);
  parts.push(`<text transform="translate(18 ${(plot.top + plot.bottom) / 2}) rotate(-90)" text-anchor="middle">${escapeXml(spec.yLabel)}</text>`);
  spec.series.forEach((series, index) => {
    const color = COLORS[index % COLORS.length];
    const points = series.points.filter((point): point is { x: number; y: number } => point.y !== undefined && point.y > 0);
    const coordinates = points.map((point) => `${x.toPixel(point.x).toFixed(1)},${y.toPixel(point.y).toFixed(1)}`);
    if (coordinates.length > 1) parts.push(`<polyline points="${coordinates.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const coordinate of coordinates) {
      const [cx, cy] = coordinate.split(',');
      parts.push(`<circle cx="${cx}" cy="${cy}" r="3.5" fill="${color}"/>`);
    }
    const legendY = plot.top + 10 + index * 20;
    parts.push(`<line x1="${plot.right + 14}" y1="${legendY}" x2="${plot.right + 34}" y2="${legendY}" stroke="${color}" stroke-width="2"/>`);
    parts.push(`<text x="${plot.right + 40}" y="${legendY}" dominant-baseline="middle">${escapeXml(series.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
