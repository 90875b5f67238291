// Small statistics for the report: order statistics and a chi-square goodness-of-fit test.

export function quantile(values: readonly number[], fraction: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))]!;
}

export const median = (values: readonly number[]) => quantile(values, 0.5);

/** Standard normal upper tail, by Abramowitz & Stegun 26.2.17 (error < 7.5e-8). */
function normalUpperTail(z: number): number {
  if (z < 0) return 1 - normalUpperTail(-z);
  const t = 1 / (1 + 0.2316419 * z);
  const polynomial = t * (0.31938153 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))));
  return (Math.exp((-z * z) / 2) / Math.sqrt(2 * Math.PI)) * polynomial;
}

/**
 * P(X >= statistic) for X ~ chi-square(df), by the Wilson-Hilferty cube-root normal
 * approximation: accurate to a few thousandths for df >= 2, enough to tell "uniform" from "not".
 */
export function chiSquareUpperTail(statistic: number, degreesOfFreedom: number): number {
  const k = degreesOfFreedom;
  const z = (Math.cbrt(statistic / k) - (1 - 2 / (9 * k))) / Math.sqrt(2 / (9 * k));
  return normalUpperTail(z);
}

/** Chi-square of observed counts against a uniform split of their total over `categories`. */
export function chiSquareUniform(counts: readonly number[], categories: number): { statistic: number; degreesOfFreedom: number; pValue: number } {
  const total = counts.reduce((sum, count) => sum + count, 0);
  const expected = total / categories;
  const observed = [...counts, ...Array<number>(Math.max(0, categories - counts.length)).fill(0)];
  const statistic = observed.reduce((sum, count) => sum + (count - expected) ** 2 / expected, 0);
  const degreesOfFreedom = categories - 1;
  return { statistic, degreesOfFreedom, pValue: chiSquareUpperTail(statistic, degreesOfFreedom) };
}
