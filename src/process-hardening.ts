/**
 * What every process of the tool does first. Node opens its inspector on
 * 127.0.0.1:9229 when it receives SIGUSR1; in a root `serve` that would let
 * any local user attach and run code as root. Measured on Node 20.20 and
 * 24.21: a JavaScript SIGUSR1 listener takes the signal away from the
 * inspector on both (libuv installs its own handler over Node's);
 * `--disable-sigusr1` also works on Node >= 22.14 / 23.7, and from the very
 * first instruction, so child processes get it where it exists. Node 20
 * rejects the flag ("bad option"), so it is only passed where supported.
 *
 * Plain Node only: this runs before anything else is loaded.
 */
const DISABLE_SIGUSR1_FLAG = '--disable-sigusr1';

let hardened = false;

/** Makes SIGUSR1 harmless in this process. Idempotent. */
export function hardenProcess(): void {
  if (hardened) return;
  hardened = true;
  process.on('SIGUSR1', ignoreSignal);
}

/** Node flags for the tool's child processes: the inspector's signal is off before their first line runs. */
export function hardenedExecArgv(): string[] {
  return process.allowedNodeEnvironmentFlags.has(DISABLE_SIGUSR1_FLAG) ? [DISABLE_SIGUSR1_FLAG] : [];
}

function ignoreSignal(): void {}

/**
 * The environment for the tool's own Node children (scenario runner, workers,
 * namespace probe). Node 20 parses every certificate in NODE_EXTRA_CA_CERTS
 * before a child's first line runs: with a 220 KB bundle that tripled the
 * cost of a boot (64 ms of CPU instead of 21, measured). These children never
 * speak TLS, so they start without it; Node 24 loads it lazily anyway.
 */
export function nodeChildEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}
