import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ReuseportError } from '../errors.js';
import { toJUnit } from '../report/junit.js';
import { displayPath, formatRunReport } from '../report/scenario-report.js';
import { type IsolationChoice, type RunReport, runScenarios } from '../scenario/runner.js';
import { listScenarioFiles, loadScenario, resolveScenario, ScenarioFileError } from '../scenario/scenario-file.js';
import type { Scenario } from '../scenario/schema.js';
import { interruptSignal, openTerminal, statusLine } from './terminal.js';

export const SCENARIOS_DIR = fileURLToPath(new URL('../../../scenarios/', import.meta.url));

export interface ScenarioRunFlags {
  json: boolean;
  junit?: string;
  strict: boolean;
  isolation: IsolationChoice;
  binder?: 'builtin' | 'native';
}

export async function scenarioListCommand(options: { json: boolean }): Promise<number> {
  const terminal = await openTerminal(options);
  const scenarios = await loadAll(await listScenarioFiles(SCENARIOS_DIR));
  if (options.json) {
    terminal.out(
      JSON.stringify(
        scenarios.map((s) => ({ name: s.name, title: s.title, file: s.file, requires: s.requires })),
        null,
        2,
      ),
    );
    return 0;
  }
  const width = Math.max(...scenarios.map((s) => s.name.length));
  for (const s of scenarios) {
    const needs = s.requires.length > 0 ? terminal.style.dim(`  (needs ${s.requires.join(', ')})`) : '';
    terminal.out(`${terminal.style.bold(s.name.padEnd(width))}  ${s.title}${needs}`);
  }
  return 0;
}

export async function scenarioRunCommand(names: string[] | 'all', flags: ScenarioRunFlags): Promise<number> {
  const terminal = await openTerminal(flags);
  const files =
    names === 'all'
      ? await listScenarioFiles(SCENARIOS_DIR)
      : await Promise.all(names.map((name) => resolveScenario(name, SCENARIOS_DIR)));
  const scenarios = await loadAll(files);
  const interrupt = interruptSignal();
  const progress = flags.json ? null : await statusLine(terminal, 'starting');
  let report: RunReport;
  try {
    report = await runScenarios(
      scenarios,
      { isolation: flags.isolation, ...(flags.binder ? { binder: flags.binder } : {}) },
      {
        signal: interrupt.signal,
        onScenario: (scenario, isolation) => {
          progress?.log(`${terminal.style.bold(scenario.name)}: ${isolation ? `running (${isolation})` : 'skipped'}`);
          if (isolation) progress?.update(`${scenario.name}: starting the worker processes`);
        },
        onStep: (scenario, event) => {
          const text = `${scenario.name}: ${event.text}`;
          if (event.status === 'start') progress?.update(text);
          else progress?.log(`  ${terminal.style.green('•')} ${text}${event.detail ? ` → ${event.detail}` : ''}`);
        },
      },
    );
  } finally {
    progress?.stop();
    interrupt.release();
  }
  terminal.out(flags.json ? JSON.stringify(toJsonDocument(report), null, 2) : formatRunReport(report, terminal.style));
  if (flags.junit) {
    try {
      await writeFile(flags.junit, toJUnit(report));
    } catch (err) {
      throw new ReuseportError(`cannot write the JUnit report to ${flags.junit}: ${(err as Error).message}`, {
        code: 'EJUNIT',
        exitCode: 2,
      });
    }
  }
  if (report.interrupted) return 130;
  const { failed, errors, skipped } = report.summary;
  if (failed > 0 || errors > 0) return 1;
  return flags.strict && skipped > 0 ? 1 : 0;
}

/** Loads every file; reports the mistakes of all of them together. */
async function loadAll(files: string[]): Promise<Scenario[]> {
  const settled = await Promise.allSettled(files.map((file) => loadScenario(file)));
  const problems = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as unknown] : []));
  if (problems.length === 0) return settled.map((s) => (s as PromiseFulfilledResult<Scenario>).value);
  const fileErrors = problems.filter((p): p is ScenarioFileError => p instanceof ScenarioFileError);
  if (fileErrors.length === problems.length && fileErrors.length > 1) {
    throw new ScenarioFileError(
      fileErrors[0]!.file,
      fileErrors.flatMap((e) => e.issues),
    );
  }
  throw problems[0];
}

/** The stable --json shape: version it when it changes incompatibly. */
function toJsonDocument(report: RunReport): unknown {
  return {
    version: 1,
    kernel: report.kernel,
    node: report.node,
    uid: report.uid,
    durationMs: report.durationMs,
    interrupted: report.interrupted,
    summary: report.summary,
    scenarios: report.results.map((r) => ({
      name: r.name,
      title: r.title,
      file: displayPath(r.file),
      status: r.status,
      reason: r.reason ?? null,
      isolation: r.isolation ?? null,
      substitutions: r.substitutions,
      durationMs: r.durationMs,
      kernel: r.observations?.kernel ?? report.kernel,
      servers:
        r.observations?.instances.map((i) => ({
          server: i.server,
          replica: i.replica,
          pid: i.pid,
          uid: i.uid ?? null,
          bind: i.bind,
          binder: i.binder ?? null,
          message: i.bindMessage ?? null,
        })) ?? [],
      traffic:
        r.observations?.traffic.map((t) => ({
          id: t.id,
          target: t.target,
          port: t.port,
          attempted: t.load.attempted,
          succeeded: t.load.succeeded,
          failed: t.load.failed,
          failures: t.load.failures,
          perServer: t.perInstance,
          workerCounters: t.workerDeltas,
          accounting: t.accounting,
          elapsedMs: t.load.elapsedMs,
        })) ?? [],
      expectations: r.expectations,
      explanation: r.explanation,
    })),
  };
}
