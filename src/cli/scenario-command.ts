import { fileURLToPath } from 'node:url';
import { renderHtmlReport } from '../report/html-report.js';
import { toJUnit, toJUnitFileErrors } from '../report/junit.js';
import { renderMarkdownSummary } from '../report/markdown-report.js';
import { describeSetup, type RunDocument, sweepOwners } from '../report/run-document.js';
import { displayPath, formatRunReport } from '../report/scenario-report.js';
import { wrapLabelled } from '../report/wrap.js';
import { describeFault, trafficFailures } from '../scenario/expect.js';
import { type NamespaceProbe, startNamespaceProbe } from '../scenario/namespace-probe.js';
import { type IsolationChoice, type RunReport, runScenarios } from '../scenario/runner.js';
import { listScenarioFiles, loadScenario, resolveScenario, ScenarioFileError } from '../scenario/scenario-file.js';
import type { Scenario } from '../scenario/schema.js';
import { safeText } from '../untrusted-text.js';
import { appendReport, checkWritable, writeFileAtomic } from './report-files.js';
import { interruptSignal, openTerminal, statusLine } from './terminal.js';

export const SCENARIOS_DIR = fileURLToPath(new URL('../../../scenarios/', import.meta.url));

export interface ScenarioRunFlags {
  json: boolean;
  junit?: string;
  strict: boolean;
  isolation: IsolationChoice;
  binder?: 'builtin' | 'native';
  html?: string;
  markdown?: string;
  jobs?: number;
  /** One line per scenario that passed or was skipped; the failures in full. */
  brief?: boolean;
  /** Started by the caller before this module loaded (startNamespaceProbe); else started here. */
  namespaceProbe?: Promise<NamespaceProbe | null>;
}

export async function scenarioListCommand(options: { json: boolean }): Promise<number> {
  const terminal = await openTerminal(options);
  const scenarios = await loadAll(await listScenarioFiles(SCENARIOS_DIR));
  if (options.json) {
    terminal.out(
      JSON.stringify(
        {
          version: 1,
          scenarios: scenarios.map((s) => ({ name: s.name, title: s.title, file: s.file, requires: s.requires })),
        },
        null,
        2,
      ),
    );
    return 0;
  }
  const width = Math.max(...scenarios.map((s) => s.name.length));
  for (const s of scenarios) {
    const needs = s.requires.length > 0 ? terminal.style.dim(`  (needs ${s.requires.join(', ')})`) : '';
    // The title wraps under itself, not under the names.
    const name = `${terminal.style.bold(safeText(s.name).padEnd(width))}  `;
    terminal.out(wrapLabelled(name, `${safeText(s.title)}${needs}`, terminal.columns, ' '.repeat(width + 2)));
  }
  return 0;
}

export async function scenarioRunCommand(names: string[] | 'all', flags: ScenarioRunFlags): Promise<number> {
  const terminal = await openTerminal(flags);
  // The namespace probe starts a process under unshare: it runs while the files are read and checked.
  const namespaceProbe = flags.namespaceProbe ?? startNamespaceProbe(flags.isolation);
  namespaceProbe.catch(() => {}); // a failure surfaces where the run awaits it
  let scenarios: Scenario[];
  try {
    const files =
      names === 'all'
        ? await listScenarioFiles(SCENARIOS_DIR)
        : await Promise.all(names.map((name) => resolveScenario(name, SCENARIOS_DIR)));
    scenarios = await loadAll(files);
    // Before the run: a path that cannot be written should not cost a whole run to find out.
    if (flags.junit !== undefined) await checkWritable(flags.junit, '--junit');
    if (flags.html !== undefined) await checkWritable(flags.html, '--html');
    if (flags.markdown !== undefined) await checkWritable(flags.markdown, '--markdown');
  } catch (err) {
    // Nothing left behind: the probe's process ends before the error is reported.
    await namespaceProbe.catch(() => null);
    // A pipeline still gets its documents, with the mistakes as structured items (then exit 2).
    if (err instanceof ScenarioFileError) await reportFileErrors(err, flags, terminal);
    throw err;
  }
  const interrupt = interruptSignal();
  const progress = flags.json ? null : await statusLine(terminal, 'starting');
  let report: RunReport;
  try {
    report = await runScenarios(
      scenarios,
      {
        isolation: flags.isolation,
        ...(flags.binder ? { binder: flags.binder } : {}),
        ...(flags.jobs !== undefined ? { jobs: flags.jobs } : {}),
        namespaceProbe,
      },
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
  const document: RunDocument = toJsonDocument(report);
  terminal.out(
    flags.json
      ? JSON.stringify(document, null, 2)
      : formatRunReport(report, terminal.style, terminal.columns, flags.brief === true),
  );
  if (flags.junit !== undefined) await writeFileAtomic(flags.junit, toJUnit(report), '--junit');
  if (flags.html !== undefined) await writeFileAtomic(flags.html, renderHtmlReport(document), '--html');
  if (flags.markdown !== undefined)
    await writeFileAtomic(flags.markdown, renderMarkdownSummary(document), '--markdown');
  const stepSummary = process.env.GITHUB_STEP_SUMMARY;
  if (stepSummary) await appendReport(stepSummary, renderMarkdownSummary(document), 'GITHUB_STEP_SUMMARY');
  if (report.interrupted) return 130;
  const { failed, errors, skipped } = report.summary;
  if (failed > 0 || errors > 0) return 1;
  return flags.strict && skipped > 0 ? 1 : 0;
}

async function reportFileErrors(
  err: ScenarioFileError,
  flags: ScenarioRunFlags,
  terminal: Awaited<ReturnType<typeof openTerminal>>,
): Promise<void> {
  if (flags.json) terminal.out(JSON.stringify({ version: 1, ok: false, errors: err.issues }, null, 2));
  if (flags.junit !== undefined && flags.junit.trim() !== '') {
    await checkWritable(flags.junit, '--junit');
    await writeFileAtomic(flags.junit, toJUnitFileErrors(err.issues), '--junit');
  }
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
function toJsonDocument(report: RunReport) {
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
      isolationNote: r.isolationNote ?? null,
      substitutions: r.substitutions,
      durationMs: r.durationMs,
      kernel: r.observations?.kernel ?? report.kernel,
      portRange: r.observations?.portRange ?? null,
      servers:
        r.observations?.instances.map((i) => ({
          server: i.server,
          replica: i.replica,
          pid: i.pid,
          uid: i.uid ?? null,
          startStep: i.startStep ?? null,
          bind: i.bind,
          port: i.port ?? null,
          binder: i.binder ?? null,
          engine: i.engine ?? null,
          engineReason: i.engineReason ?? null,
          message: i.bindMessage ?? null,
          options: i.options ?? null,
          fault: i.fault ? { ...i.fault, description: describeFault(i) } : null,
        })) ?? [],
      traffic:
        r.observations?.traffic.map((t) => ({
          id: t.id,
          target: t.target,
          port: t.port,
          attempted: t.load.attempted,
          attributed: t.load.attributed,
          silent: t.load.silent,
          inFlight: t.load.inFlight,
          failed: t.load.failed,
          failures: t.load.failures,
          unanswered: trafficFailures(t.load),
          perServer: t.perInstance,
          workerCounters: t.workerDeltas,
          accounting: t.accounting,
          explained: t.explained,
          reconciliation: t.reconciliation,
          elapsedMs: t.load.elapsedMs,
          ...(t.sweep ? { sweep: t.sweep, owners: sweepOwners(t.sweep) } : {}),
        })) ?? [],
      // Lifecycle steps: each replica's outcome, kernel counter deltas and TIME_WAIT per step, held connections.
      lifecycle: r.observations?.lifecycle
        ? {
            steps: r.observations.steps.flatMap((s) => (s.kind === 'lifecycle' ? [s] : [])),
            kernel: r.observations.lifecycle.kernel,
            holds: r.observations.lifecycle.holds,
          }
        : null,
      expectations: r.expectations,
      article: r.article,
      lookFor: r.lookFor,
      explanation: r.explanation,
      setup: r.ran ? describeSetup(r.ran) : null,
    })),
  };
}
