/**
 * The part of a scenario run that lives inside the scenario's own network
 * namespace (or on the host with --isolation host). It reports to the runner
 * over IPC; when the runner goes, it stops its workers and goes too.
 */
import { ReuseportError } from '../errors.js';
import { hardenProcess } from '../process-hardening.js';
import { executePlan } from './execute.js';
import { setUpNamespace } from './network.js';
import type { InnerEvent, OuterMessage, Plan } from './observations.js';

hardenProcess();
const controller = new AbortController();
const abort = () => controller.abort();
process.on('SIGINT', abort);
process.on('SIGTERM', abort);
process.on('SIGHUP', abort);
process.on('disconnect', abort);

function send(event: InnerEvent): Promise<void> {
  return new Promise((resolve) => {
    if (process.send && process.connected) process.send(event, undefined, {}, () => resolve());
    else resolve();
  });
}

/** The plan is the runner's first IPC message: a large scenario would not fit in argv (E2BIG). */
function receivePlan(): Promise<Plan | null> {
  return new Promise((resolve) => {
    if (controller.signal.aborted) resolve(null);
    controller.signal.addEventListener('abort', () => resolve(null), { once: true });
    process.once('message', (message: OuterMessage) => resolve(message.type === 'plan' ? message.plan : null));
  });
}

async function main(): Promise<number> {
  const plan = await receivePlan();
  if (!plan) {
    await send({
      type: 'fatal',
      message: controller.signal.aborted ? 'interrupted' : 'no plan received',
      code: 'EINTERNAL',
    });
    return controller.signal.aborted ? 130 : 1;
  }
  try {
    if (plan.isolation === 'netns') await setUpNamespace(plan.scenario.network);
    const observations = await executePlan(plan, (event) => void send(event), controller.signal);
    if (controller.signal.aborted) {
      await send({ type: 'fatal', message: 'interrupted', code: 'EINTERRUPTED' });
      return 130;
    }
    await send({ type: 'result', observations });
    return 0;
  } catch (err) {
    const interrupted = controller.signal.aborted;
    const code = interrupted ? 'EINTERRUPTED' : err instanceof ReuseportError ? err.code : 'EINTERNAL';
    const message = interrupted ? 'interrupted' : err instanceof Error ? err.message : String(err);
    await send({ type: 'fatal', message, code });
    return interrupted ? 130 : 1;
  }
}

main().then((code) => process.exit(code));
