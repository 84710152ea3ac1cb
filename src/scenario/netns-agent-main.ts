/**
 * The process that holds a scenario's second network namespace (namespaces.ts):
 * started by `unshare --net`, it brings lo up and sends the traffic steps that
 * name its namespace. It exits when the runner's channel closes.
 */
import { configureLoopback } from '../net/loopback.js';
import { hardenProcess } from '../process-hardening.js';
import type { FromAgent, ToAgent } from './namespaces.js';
import { sendTraffic } from './steering-run.js';

hardenProcess();
process.on('disconnect', () => process.exit(0));

function send(message: FromAgent): void {
  if (process.send && process.connected) process.send(message);
}

process.on('message', (message: ToAgent) => {
  if (message.type !== 'traffic') return;
  sendTraffic(message.spec, message.deadlineMs).then(
    (sent) => send({ type: 'traffic-done', seq: message.seq, sent }),
    (err: unknown) =>
      send({ type: 'traffic-failed', seq: message.seq, message: err instanceof Error ? err.message : String(err) }),
  );
});

configureLoopback([]).then(
  () => send({ type: 'ready' }),
  (err: unknown) => {
    send({ type: 'setup-failed', message: err instanceof Error ? err.message : String(err) });
    process.disconnect?.();
  },
);
