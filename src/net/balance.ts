import { chiSquareUniform } from '../stats/chi-square.js';

/**
 * Below this p-value a spread is called uneven. One honest run in a million
 * is: a check that people and pipelines run over and over (a full `npm test`
 * makes about thirty) must almost never cry wolf, while a real skew, such as
 * one socket of five with twice its share over 1000 connections (p ≈ 1e-22),
 * still fails by far. At 0.001 about 3 % of suite runs failed by chance.
 */
export const BALANCE_ALPHA = 1e-6;

/** How evenly connections landed on the workers, as a chi-square fit against 1/N each. */
export interface BalanceVerdict {
  /**
   * What each count counts: every attributed connection, or each client source
   * port once. The same 4-tuple always lands on the same socket, so when source
   * ports repeat, only distinct ports are independent draws.
   */
  basis: 'connections' | 'distinctSourcePorts';
  /** One per worker; workers expected but never heard from are zeros at the end. */
  counts: number[];
  chiSquare: number;
  df: number;
  pValue: number;
  /** The p-value below which the spread is called uneven. */
  alpha: number;
  /** pValue >= alpha: nothing here says the kernel spread unevenly. */
  even: boolean;
  /** How many workers serve the target, when the caller said; null when unknown. */
  workersExpected: number | null;
  /** Every expected worker got at least one; null when the number of workers is unknown. */
  everyWorkerUsed: boolean | null;
}

/**
 * The verdict over `counts` (one per worker that answered). With
 * `workersExpected`, the workers that never answered count as zeros, since a
 * client cannot see a worker that got nothing.
 */
export function balanceVerdict(
  counts: readonly number[],
  basis: BalanceVerdict['basis'],
  workersExpected?: number,
): BalanceVerdict {
  const padded = [...counts];
  if (workersExpected !== undefined) while (padded.length < workersExpected) padded.push(0);
  const fit = chiSquareUniform(padded);
  return {
    basis,
    counts: padded,
    chiSquare: fit.statistic,
    df: fit.degreesOfFreedom,
    pValue: fit.pValue,
    alpha: BALANCE_ALPHA,
    even: fit.pValue >= BALANCE_ALPHA,
    workersExpected: workersExpected ?? null,
    everyWorkerUsed: workersExpected === undefined ? null : padded.every((n) => n > 0),
  };
}
