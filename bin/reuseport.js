#!/usr/bin/env node
// Thin on purpose: the CLI lives in dist/src/cli; this file only hardens the process and exits.
// Exit only once stdout and stderr have flushed: a pipe is asynchronous in
// Node, and process.exit() would cut a large --json document short.
const exitAfterFlush = (code) => process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));

import('../dist/src/process-hardening.js')
  .then(({ hardenProcess }) => {
    hardenProcess();
    return import('../dist/src/cli/main.js');
  })
  .then(
    ({ run }) => run(process.argv).then(exitAfterFlush),
    (err) => {
      process.stderr.write(
        `reuseport: cannot load the compiled CLI (${err.code ?? err.message}); run \`npm install\` (or \`npm run build\`) in the package folder\n`,
      );
      exitAfterFlush(1);
    },
  );
