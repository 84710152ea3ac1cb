import path from 'node:path';
import { reconcileServeWithLoad } from '../net/reconcile.js';
import { formatReconciliation, reconcileJson } from '../report/reconcile-report.js';
import { displayPath } from '../text-file.js';
import { readLoadResult, readServeCounts } from './run-records.js';
import { openTerminal } from './terminal.js';

export async function reconcileCommand(
  serveFile: string,
  loadFile: string,
  options: { json: boolean },
): Promise<number> {
  // Both files are checked before anything is printed: bad input is one line, exit 2.
  const serve = await readServeCounts(serveFile);
  const load = await readLoadResult(loadFile);
  const reconciliation = reconcileServeWithLoad(serve, load);
  const terminal = await openTerminal(options);
  const inputs = {
    serveFile: displayPath(path.resolve(serveFile)),
    loadFile: displayPath(path.resolve(loadFile)),
    serve,
    load,
  };
  terminal.out(
    options.json
      ? reconcileJson(inputs, reconciliation)
      : formatReconciliation(inputs, reconciliation, terminal.style, terminal.columns),
  );
  return reconciliation.consistent ? 0 : 1;
}
