#!/usr/bin/env node
// Thin on purpose: the CLI lives in dist/src/cli; this file only hardens the process and exits.
import('../dist/src/process-hardening.js')
  .then(({ hardenProcess }) => {
    hardenProcess();
    return import('../dist/src/cli/main.js');
  })
  .then(
    ({ run }) => run(process.argv).then((code) => process.exit(code)),
    (err) => {
      process.stderr.write(
        `reuseport: cannot load the compiled CLI (${err.code ?? err.message}); run \`npm install\` (or \`npm run build\`) in the package folder\n`,
      );
      process.exit(1);
    },
  );
