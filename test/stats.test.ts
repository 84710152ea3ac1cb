import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  chiSquareSurvival,
  chiSquareUniform,
  logGamma,
  regularizedGammaP,
  regularizedGammaQ,
  shares,
} from '../src/stats/chi-square.js';

function close(actual: number, expected: number, tolerance: number, what = ''): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what} expected ${expected} ± ${tolerance}, got ${actual} (off by ${Math.abs(actual - expected)})`,
  );
}

/** Q(k, x/2) for even df = 2k has a closed form: e^(−x/2) Σ_{i<k} (x/2)^i / i!. */
function evenDfSurvival(x: number, df: number): number {
  const h = x / 2;
  let term = 1;
  let total = 1;
  for (let i = 1; i < df / 2; i++) {
    term *= h / i;
    total += term;
  }
  return Math.exp(-h) * total;
}

describe('chiSquareUniform', () => {
  it('gives statistic 0 and p 1 for perfectly even counts', () => {
    assert.deepEqual(chiSquareUniform([10, 10, 10, 10]), { statistic: 0, degreesOfFreedom: 3, pValue: 1 });
  });

  it('computes Pearson’s statistic against the mean', () => {
    // expected 20 each: (15-20)²/20 + (25-20)²/20 + 0 + (19-20)²/20 + (21-20)²/20 = 2.6
    const r = chiSquareUniform([15, 25, 20, 19, 21]);
    close(r.statistic, 2.6, 1e-12, 'statistic');
    assert.equal(r.degreesOfFreedom, 4);
    // scipy.stats.chi2.sf(2.6, 4) = 0.6268231239782...; closed form for even df
    close(r.pValue, evenDfSurvival(2.6, 4), 1e-12, 'p');
    close(r.pValue, 0.6268231239782, 1e-10, 'p vs table');
  });

  it('gives p < 1e-6 for very skewed counts', () => {
    const r = chiSquareUniform([1000, 0, 0, 0, 0]);
    close(r.statistic, 4000, 1e-9, 'statistic');
    assert.ok(r.pValue < 1e-6, `p = ${r.pValue}`);
    assert.ok(r.pValue >= 0);
    const mild = chiSquareUniform([300, 100, 100, 100, 100]);
    assert.ok(mild.pValue < 1e-6, `p = ${mild.pValue}`);
  });

  it('handles the edge cases', () => {
    assert.deepEqual(chiSquareUniform([42]), { statistic: 0, degreesOfFreedom: 0, pValue: 1 });
    assert.deepEqual(chiSquareUniform([0, 0, 0]), { statistic: 0, degreesOfFreedom: 2, pValue: 1 });
    assert.deepEqual(chiSquareUniform([]), { statistic: 0, degreesOfFreedom: 0, pValue: 1 });
    assert.throws(() => chiSquareUniform([1, -1]), RangeError);
    assert.throws(() => chiSquareUniform([1, Number.NaN]), RangeError);
  });
});

describe('chiSquareSurvival', () => {
  it('matches table critical values', () => {
    // Rounded table values, reference from scipy.stats.chi2.sf.
    close(chiSquareSurvival(11.07, 5), 0.050009618622405425, 1e-10, '11.07, df 5');
    close(chiSquareSurvival(3.84, 1), 0.05004352124870519, 1e-10, '3.84, df 1');
    close(chiSquareSurvival(11.07, 5), 0.05, 1e-4, '11.07, df 5 ≈ 0.05');
    close(chiSquareSurvival(3.84, 1), 0.05, 1e-4, '3.84, df 1 ≈ 0.05');
    // Exact quantiles (scipy.stats.chi2.ppf).
    close(chiSquareSurvival(3.841458820694124, 1), 0.05, 1e-10, 'df 1, 0.95');
    close(chiSquareSurvival(6.6348966010212145, 1), 0.01, 1e-10, 'df 1, 0.99');
    close(chiSquareSurvival(10.827566170662733, 1), 0.001, 1e-10, 'df 1, 0.999');
    close(chiSquareSurvival(11.070497693516351, 5), 0.05, 1e-10, 'df 5, 0.95');
    close(chiSquareSurvival(124.34211340400407, 100), 0.05, 1e-10, 'df 100, 0.95');
  });

  it('is accurate in the far tail', () => {
    // scipy.stats.chi2.sf(50, 3) = 7.989179244951495e-11
    const p = chiSquareSurvival(50, 3);
    assert.ok(Math.abs(p - 7.989179244951495e-11) / 7.989179244951495e-11 < 1e-9, `p = ${p}`);
  });

  it('matches the closed form for even degrees of freedom', () => {
    for (const df of [2, 4, 6, 10, 20, 40]) {
      for (const x of [0.1, 1, df / 2, df - 1, df, df + 1, 2 * df, 5 * df]) {
        const expected = evenDfSurvival(x, df);
        close(chiSquareSurvival(x, df), expected, 1e-12, `x ${x}, df ${df}`);
      }
    }
  });

  it('returns 1 at x = 0 or df = 0 and rejects bad input', () => {
    assert.equal(chiSquareSurvival(0, 3), 1);
    assert.equal(chiSquareSurvival(5, 0), 1);
    assert.throws(() => chiSquareSurvival(Number.NaN, 3), RangeError);
    assert.throws(() => chiSquareSurvival(1, -1), RangeError);
  });
});

describe('incomplete gamma', () => {
  it('P + Q = 1 on both sides of the series / continued fraction switch', () => {
    for (const a of [0.5, 1, 2.5, 10, 100]) {
      for (const x of [0.01, a / 2, a, a + 0.999, a + 1, a + 1.001, 2 * a + 3]) {
        close(regularizedGammaP(a, x) + regularizedGammaQ(a, x), 1, 1e-13, `a ${a}, x ${x}`);
      }
    }
  });

  it('Q(1, x) = e^-x', () => {
    for (const x of [0.001, 0.5, 1, 2, 10, 50]) close(regularizedGammaQ(1, x), Math.exp(-x), 1e-14, `x ${x}`);
  });

  it('logGamma matches factorials and Γ(1/2) = √π', () => {
    close(logGamma(1), 0, 1e-14);
    close(logGamma(5), Math.log(24), 1e-13);
    close(logGamma(11), Math.log(3628800), 1e-12);
    close(logGamma(0.5), Math.log(Math.sqrt(Math.PI)), 1e-14);
    close(logGamma(0.1), Math.log(9.513507698668732), 1e-13);
  });
});

describe('shares', () => {
  it('divides by the total', () => {
    assert.deepEqual(shares([1, 3]), [0.25, 0.75]);
    assert.deepEqual(shares([0, 0]), [0, 0]);
    assert.deepEqual(shares([]), []);
  });
});
