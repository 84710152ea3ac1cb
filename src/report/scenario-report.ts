import path from 'node:path';
import { formatHostPort } from '../errors.js';
import { describeFault, trafficFailures } from '../scenario/expect.js';
import type { InstanceObservation } from '../scenario/observations.js';
import type { RunReport, ScenarioResult } from '../scenario/runner.js';
import { safeProse, safeText } from '../untrusted-text.js';
import { acceptLine } from './serve-report.js';
import type { Style } from './style.js';
import { type Cell, percent, renderTable } from './table.js';
import { fitLines, paragraphs } from './wrap.js';

/** `columns`: the width to fit (the terminal's; 80 when output is not a terminal). */
/**
 * The whole run. `brief`: one line per scenario that passed or was skipped,
 * and the full report of each one that did not, where the detail is needed.
 */
export function formatRunReport(report: RunReport, style: Style, columns = 80, brief = false): string {
  const parts = report.results.map((result) =>
    brief && (result.status === 'passed' || result.status === 'skipped')
      ? briefLine(result, style)
      : formatScenario(result, style, columns),
  );
  const { summary } = report;
  const counts = [
    style.green(`${summary.passed} passed`),
    summary.failed > 0 ? style.red(`${summary.failed} failed`) : `${summary.failed} failed`,
    summary.errors > 0 ? style.red(`${summary.errors} could not run`) : null,
    summary.skipped > 0 ? style.yellow(`${summary.skipped} skipped`) : `${summary.skipped} skipped`,
  ].filter((c): c is string => c !== null);
  parts.push(
    style.bold(
      `${summary.total} scenario${summary.total === 1 ? '' : 's'}: ${counts.join(', ')} in ${(report.durationMs / 1000).toFixed(1)} s — ${report.kernel}, Node ${report.node}${report.interrupted ? ' — interrupted' : ''}`,
    ),
  );
  return fitLines(parts.join('\n\n'), columns);
}

/** Who served which servers and why (chooseEngine's reasons): one entry per engine and reason. */
function describeEngines(instances: InstanceObservation[]): string {
  const groups = new Map<string, { engine: string; reason: string; servers: Set<string> }>();
  for (const i of instances) {
    if (!i.engine) continue;
    const key = `${i.engine}\0${i.engineReason ?? ''}`;
    const group = groups.get(key) ?? { engine: i.engine, reason: i.engineReason ?? '', servers: new Set() };
    group.servers.add(i.server);
    groups.set(key, group);
  }
  const all = groups.size === 1;
  return [...groups.values()]
    .map((g) => `${g.engine}${all ? '' : ` for ${[...g.servers].join(', ')}`}${g.reason ? ` (${g.reason})` : ''}`)
    .join('; ');
}

const STATUS_WORD: Record<ScenarioResult['status'], string> = {
  passed: 'PASSED',
  failed: 'FAILED',
  skipped: 'SKIPPED',
  error: 'COULD NOT RUN',
};

export function formatScenario(result: ScenarioResult, style: Style, columns = 80): string {
  const lines: string[] = [];
  lines.push(style.bold(`━━ ${safeText(result.name)}: ${safeText(result.title)}`));
  lines.push(style.dim(`   ${safeText(displayPath(result.file))}`));
  if (result.article !== undefined) lines.push(`${style.bold('The article:')} ${prose(result.article)}`);
  if (result.status === 'skipped' || (result.status === 'error' && !result.observations)) {
    lines.push(colourStatus(result, style, `${STATUS_WORD[result.status]}: ${safeText(result.reason ?? '')}`));
    return fitLines(lines.join('\n'), columns);
  }
  const ran = result.ran;
  const observations = result.observations;
  lines.push(`${style.bold('Isolation:')} ${result.isolationNote ?? result.isolation ?? ''}`);
  if (observations) lines.push(`${style.bold('Kernel:')} ${observations.kernel}`);
  const engines = observations ? describeEngines(observations.instances) : '';
  if (engines) lines.push(`${style.bold('Engine:')} ${engines}`);
  for (const a of result.substitutions.addresses) lines.push(style.dim(`   ${a.from} stands as ${a.to} on the host`));
  for (const p of result.substitutions.ports) lines.push(style.dim(`   port ${p.from} is ${p.to} on the host`));
  if (ran && ran.network.addresses.length > 0 && result.isolation === 'netns') {
    lines.push(`${style.bold('Namespace lo:')} 127.0.0.1, ${ran.network.addresses.map((a) => a.address).join(', ')}`);
  }
  if (ran && observations) {
    lines.push(style.bold('Servers:'));
    const rows = ran.servers
      .filter((s) => observations.instances.some((i) => i.server === s.id))
      .map((s) => {
        const instances = observations.instances.filter((i) => i.server === s.id);
        // An errno the scenario expected is an outcome that held, not an error: colour follows the expectation.
        const expected = result.expectations.find(
          (e) => e.kind === 'bind' && e.description.startsWith(`${s.id} bind: `),
        );
        const held = expected ? expected.passed : undefined;
        const binds = instances.map((i) => {
          const bind = (held ?? i.bind === 'ok') ? style.green(i.bind) : style.red(i.bind);
          return i.fault ? `${bind}, then ${style.red(i.fault.kind === 'died' ? 'died' : 'stopped answering')}` : bind;
        });
        return [
          s.id,
          // port 0: the port the kernel chose, as the workers reported it
          formatHostPort(s.address, s.port || (instances.find((i) => i.port)?.port ?? 0)),
          s.protocol,
          s.reuseport ? 'SO_REUSEPORT' : 'no SO_REUSEPORT',
          s.user !== undefined ? `user ${s.user}` : 'this user',
          `×${s.replicas}`,
          // One outcome for all, or each replica's own ("#1 ok, then died; #2 ok").
          new Set(binds).size === 1 ? binds[0]! : instances.map((i, n) => `#${i.replica} ${binds[n]}`).join('; '),
          instances.map((i) => i.pid).join(' '),
        ];
      });
    lines.push(
      indent(
        renderTable(['id', 'address', 'proto', 'option', 'owner', 'procs', 'bind', 'pids'], rows, [], columns - 3),
      ),
    );
    for (const instance of observations.instances.filter((i) => i.fault)) {
      lines.push(`   ${style.red('✘')} ${describeFault(instance)}`);
    }
    for (const traffic of observations.traffic) {
      const noun = traffic.load.protocol === 'tcp' ? 'connections' : 'datagrams';
      lines.push(
        style.bold(
          `Traffic ${traffic.id}: ${traffic.load.attempted} ${noun} to ${formatHostPort(traffic.target, traffic.port)}`,
        ),
      );
      const max = Math.max(0, ...traffic.perInstance.map((p) => p.count));
      const trafficRows: Cell[][] = traffic.perInstance.map((p) => [
        `${p.server}${countReplicas(traffic, p.server) > 1 ? `#${p.replica}` : ''}`,
        String(p.pid),
        String(p.count),
        percent(p.count, traffic.load.attempted),
        { value: p.count, max, width: 24, paint: style.cyan },
      ]);
      for (const failure of trafficFailures(traffic.load)) {
        trafficRows.push([
          style.red(failure.what),
          '',
          String(failure.count),
          percent(failure.count, traffic.load.connections),
          '',
        ]);
      }
      lines.push(
        indent(
          renderTable(
            ['server', 'pid', noun, 'share', ''],
            trafficRows,
            ['left', 'right', 'right', 'right'],
            columns - 3,
          ),
        ),
      );
      // The article's own per-process lines, from each worker's own counter.
      const server = ran.servers;
      for (const delta of traffic.workerDeltas) {
        const spec = server.find((s) => s.id === delta.server);
        if (!spec) continue;
        lines.push(
          style.dim(
            delta.accepted === null
              ? `   Server ${formatHostPort(spec.address, spec.port)} (${delta.pid}) accept success: unknown (its counter file could not be read)`
              : `   ${acceptLine(spec.address, spec.port, delta.pid, delta.accepted)}`,
          ),
        );
      }
    }
  }
  lines.push(style.bold('Expectations:'));
  for (const e of result.expectations) {
    const mark = e.passed ? style.green('✔') : style.red('✘');
    const where = e.line > 0 ? style.dim(` (line ${e.line})`) : '';
    lines.push(`  ${mark} ${e.description}${where}`);
    lines.push(
      e.passed
        ? style.dim(`      observed: ${e.observed}`)
        : `      expected: ${e.expected}\n      observed: ${style.red(e.observed)}`,
    );
  }
  if (result.explanation !== undefined) lines.push(`${style.bold('Why:')} ${prose(result.explanation)}`);
  lines.push(
    colourStatus(
      result,
      style,
      `${STATUS_WORD[result.status]}${result.reason ? `: ${result.reason}` : ''} (${(result.durationMs / 1000).toFixed(1)} s)`,
    ),
  );
  return fitLines(lines.join('\n'), columns);
}

function countReplicas(traffic: { perInstance: { server: string }[] }, server: string): number {
  return traffic.perInstance.filter((p) => p.server === server).length;
}

function briefLine(result: ScenarioResult, style: Style): string {
  const why = result.status === 'skipped' ? `: ${safeText(result.reason ?? '')}` : '';
  const time = result.status === 'passed' ? ` (${(result.durationMs / 1000).toFixed(1)} s)` : '';
  return `${colourStatus(result, style, STATUS_WORD[result.status])} ${safeText(result.name)}${time}${why}`;
}

function colourStatus(result: ScenarioResult, style: Style, text: string): string {
  if (result.status === 'passed') return style.green(style.bold(text));
  if (result.status === 'skipped') return style.yellow(style.bold(text));
  return style.red(style.bold(text));
}

/** Relative to the current directory when the file is below it. */
export function displayPath(file: string): string {
  const relative = path.relative(process.cwd(), file);
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file;
}

/** Scenario prose, one line per paragraph for fitLines to wrap, with anything that could drive the terminal escaped. */
function prose(text: string): string {
  return safeProse(paragraphs(text));
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `   ${line}`)
    .join('\n');
}
