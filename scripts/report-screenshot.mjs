// Remakes docs/report.png (the shipped scenarios' HTML report, as Chromium
// draws it) and docs/remap-chart.png (its first before/after chart of a remap). Run after a build, as root (the cross-user scenario needs it):
//   npx tsc -p tsconfig.json && node scripts/report-screenshot.mjs
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { launchChromium } from '../dist/test/browser.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'reuseport-shot-'));
try {
  const html = join(work, 'report.html');
  const run = spawnSync(process.execPath, [join(root, 'bin', 'reuseport.js'), 'scenario', 'all', '--html', html], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, GITHUB_STEP_SUMMARY: '' },
  });
  if (run.status !== 0) throw new Error(`scenario all exited ${run.status}`);
  const browser = await launchChromium();
  try {
    const page = await browser.context.newPage();
    // The top of the page: the summary and the first scenarios, readable at README width.
    await page.setViewportSize({ width: 960, height: 1500 });
    await page.goto(pathToFileURL(html).href);
    await page.screenshot({ path: join(root, 'docs', 'report.png') });
    await page
      .locator('#scenario-group-change-remap figure.steering')
      .first()
      .screenshot({
        path: join(root, 'docs', 'remap-chart.png'),
      });
  } finally {
    await browser.close();
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
