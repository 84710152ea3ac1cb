import type { LoadResult } from '../net/load-client.js';
import type { Reconciliation, ServeCounts } from '../net/reconcile.js';
import { safeText } from '../untrusted-text.js';
import type { Style } from './style.js';
import { renderTable } from './table.js';
import { wrapLabelled, wrapProse } from './wrap.js';

/** The --json document's version: bumped when a field changes meaning or goes away. */
export const RECONCILE_JSON_VERSION = 1;

/** Said in the report, the JSON and the help: what a post-hoc check of serve's totals cannot tell apart. */
export const ONLY_CLIENT_ASSUMPTION =
  "serve counts every accept since it started, so this assumes the load was serve's only client: " +
  "another client's connections show up as unexplained counts, a load that reached other servers as strangers";

export interface ReconcileInputs {
  serveFile: string;
  loadFile: string;
  serve: ServeCounts;
  load: LoadResult;
}

export function reconcileJson(inputs: ReconcileInputs, r: Reconciliation): string {
  const { load } = inputs;
  return JSON.stringify(
    {
      version: RECONCILE_JSON_VERSION,
      serve: { file: inputs.serveFile, port: inputs.serve.port, protocol: inputs.serve.protocol },
      load: {
        file: inputs.loadFile,
        protocol: load.protocol,
        target: load.target,
        connections: load.connections,
        attributed: load.attributed,
        silent: load.silent,
        inFlight: load.inFlight,
        unrecognized: load.unrecognized,
        failed: load.failed,
        failures: load.failures,
        notStarted: load.notStarted,
        stoppedEarly: load.stoppedEarly,
      },
      assumption: ONLY_CLIENT_ASSUMPTION,
      ...r,
    },
    null,
    2,
  );
}

/** `columns`: the width to fit (the terminal's; 80 when output is not a terminal). */
export function formatReconciliation(inputs: ReconcileInputs, r: Reconciliation, style: Style, columns = 80): string {
  const { load, serve } = inputs;
  const noun = load.protocol === 'tcp' ? 'connections' : 'datagrams';
  const accepted = load.protocol === 'tcp' ? 'accepted' : 'read';
  const lines: string[] = [];
  lines.push(
    style.bold(
      wrapProse(
        `serve ${safeText(inputs.serveFile)} (${serve.protocol.toUpperCase()} port ${serve.port}) against load ${safeText(inputs.loadFile)} (${load.connections} ${noun} to port ${load.target.port})`,
        columns,
      ),
    ),
  );
  lines.push(
    renderTable(
      ['worker', 'pid', accepted, 'attributed', 'no greeting'],
      r.workers.map((w) => [
        String(w.workerId ?? '?'),
        String(w.pid),
        w.accepted === null ? '?' : String(w.accepted),
        String(w.attributed),
        w.overAttributed > 0 ? `−${w.overAttributed}` : String(w.notGreeted),
      ]),
      ['right', 'right', 'right', 'right', 'right'],
      columns,
    ),
  );
  const cut =
    load.stoppedEarly === 'deadline'
      ? ' (cut off by --deadline)'
      : load.stoppedEarly === 'aborted'
        ? ' (cut off by Ctrl-C)'
        : '';
  lines.push(
    wrapLabelled(
      'load: ',
      `${load.attributed} attributed, ${load.silent} silent, ${load.inFlight} in flight${cut}, ${load.unrecognized} unrecognized, ${load.failed} failed, ${load.notStarted} not started: ${r.connectedWithoutGreeting} connected without a greeting (silent, in flight, unrecognized or reset)`,
      columns,
    ),
  );
  lines.push(
    wrapLabelled(
      'workers: ',
      `${r.acceptedWithoutGreeting} ${accepted} without a greeting reaching the client, ${r.neverAccepted} never ${accepted}, ${r.unexplained} unexplained`,
      columns,
    ),
  );
  for (const problem of r.problems) lines.push(style.red(wrapLabelled('✘ ', problem, columns)));
  for (const explanation of r.explanations) lines.push(wrapLabelled('· ', explanation, columns));
  lines.push(
    r.consistent
      ? style.green(wrapProse('Consistent: every count is explained.', columns))
      : style.red(wrapProse('Inconsistent: a count above is wrong, unknown or unexplained.', columns)),
  );
  lines.push(style.dim(wrapLabelled('note: ', ONLY_CLIENT_ASSUMPTION, columns)));
  return lines.join('\n');
}
