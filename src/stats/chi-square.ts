/**
 * Small, dependency-free statistics used to judge how evenly the kernel spread
 * connections over the sockets of a SO_REUSEPORT group.
 */

export interface ChiSquareResult {
  /** Pearson's X² = Σ (observed − expected)² / expected, expected = total / k. */
  statistic: number;
  /** k − 1 (0 when there are fewer than two categories). */
  degreesOfFreedom: number;
  /** P(χ²(df) ≥ statistic) = Q(df/2, statistic/2). 1 when the test is vacuous. */
  pValue: number;
}

/**
 * Pearson chi-square goodness of fit of `counts` against the uniform distribution
 * over `counts.length` categories.
 *
 * Edge cases: fewer than two categories (df 0) and a zero total have nothing to
 * test, so they return statistic 0 and pValue 1. Negative or non-finite counts
 * throw a RangeError.
 */
export function chiSquareUniform(counts: readonly number[]): ChiSquareResult {
  checkCounts(counts);
  const k = counts.length;
  const total = sum(counts);
  if (k < 2 || total === 0) {
    return { statistic: 0, degreesOfFreedom: Math.max(0, k - 1), pValue: 1 };
  }
  const expected = total / k;
  let statistic = 0;
  for (const observed of counts) {
    const d = observed - expected;
    statistic += (d * d) / expected;
  }
  const degreesOfFreedom = k - 1;
  return { statistic, degreesOfFreedom, pValue: chiSquareSurvival(statistic, degreesOfFreedom) };
}

/** Each count as a fraction of the total (all zeros when the total is zero). */
export function shares(counts: readonly number[]): number[] {
  checkCounts(counts);
  const total = sum(counts);
  return counts.map((c) => (total === 0 ? 0 : c / total));
}

/** Upper tail of the chi-square distribution: P(X ≥ x) for X ~ χ²(df). df 0 gives 1. */
export function chiSquareSurvival(x: number, df: number): number {
  if (!(df >= 0) || !Number.isFinite(df)) throw new RangeError(`degrees of freedom must be >= 0, got ${df}`);
  if (Number.isNaN(x)) throw new RangeError('chi-square statistic is NaN');
  if (df === 0 || x <= 0) return 1;
  return regularizedGammaQ(df / 2, x / 2);
}

const EPSILON = 1e-16;
const TINY = 1e-300;
const MAX_ITERATIONS = 100_000;

/** Regularized lower incomplete gamma P(a, x) = γ(a, x) / Γ(a), for a > 0, x >= 0. */
export function regularizedGammaP(a: number, x: number): number {
  checkGammaArgs(a, x);
  if (x === 0) return 0;
  if (x === Number.POSITIVE_INFINITY) return 1;
  return x < a + 1 ? gammaSeries(a, x) : 1 - gammaContinuedFraction(a, x);
}

/** Regularized upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a) = 1 − P(a, x), for a > 0, x >= 0. */
export function regularizedGammaQ(a: number, x: number): number {
  checkGammaArgs(a, x);
  if (x === 0) return 1;
  if (x === Number.POSITIVE_INFINITY) return 0;
  // The series converges fast below a + 1 and Q is not small there, so 1 − P
  // loses nothing; above it the continued fraction gives Q with full relative
  // precision even far in the tail.
  return x < a + 1 ? 1 - gammaSeries(a, x) : gammaContinuedFraction(a, x);
}

/** P(a, x) by the series γ(a,x) = e^-x x^a Σ x^n / (a (a+1) … (a+n)). */
function gammaSeries(a: number, x: number): number {
  let term = 1 / a;
  let total = term;
  let ap = a;
  for (let n = 0; n < MAX_ITERATIONS; n++) {
    ap += 1;
    term *= x / ap;
    total += term;
    if (Math.abs(term) < Math.abs(total) * EPSILON) break;
  }
  return Math.min(1, total * Math.exp(-x + a * Math.log(x) - logGamma(a)));
}

/** Q(a, x) by the continued fraction for Γ(a, x), evaluated with the modified Lentz method. */
function gammaContinuedFraction(a: number, x: number): number {
  let b = x + 1 - a;
  let c = 1 / TINY;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < MAX_ITERATIONS; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < TINY) d = TINY;
    c = b + an / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < EPSILON) break;
  }
  return Math.max(0, Math.exp(-x + a * Math.log(x) - logGamma(a)) * h);
}

// Lanczos approximation, g = 7, n = 9: relative error below 1e-15 for real arguments.
const LANCZOS_G = 7;
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** A p-value as reports print it: three decimals, or one significant digit in exponent form below 0.001. */
export function formatPValue(p: number): string {
  return p >= 0.001 ? p.toFixed(3) : p.toExponential(1);
}

/** ln Γ(z) for z > 0. */
export function logGamma(z: number): number {
  if (!(z > 0)) throw new RangeError(`logGamma needs z > 0, got ${z}`);
  if (z < 0.5) {
    // Reflection: Γ(z) Γ(1 − z) = π / sin(πz).
    return Math.log(Math.PI / Math.sin(Math.PI * z)) - logGamma(1 - z);
  }
  const zz = z - 1;
  let s = LANCZOS[0]!;
  for (let i = 1; i < LANCZOS.length; i++) s += LANCZOS[i]! / (zz + i);
  const t = zz + LANCZOS_G + 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (zz + 0.5) * Math.log(t) - t + Math.log(s);
}

function checkGammaArgs(a: number, x: number): void {
  if (!(a > 0) || !Number.isFinite(a)) throw new RangeError(`incomplete gamma needs a > 0, got ${a}`);
  if (!(x >= 0)) throw new RangeError(`incomplete gamma needs x >= 0, got ${x}`);
}

function checkCounts(counts: readonly number[]): void {
  for (const [i, c] of counts.entries()) {
    if (!Number.isFinite(c) || c < 0) throw new RangeError(`counts[${i}] must be a finite number >= 0, got ${c}`);
  }
}

function sum(values: readonly number[]): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}
