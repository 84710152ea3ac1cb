/**
 * Debian's Chromium driven by playwright-core, for the HTML report tests.
 * playwright-core downloads no browser of its own: it drives the system one.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';

export const CHROMIUM = process.env.REUSEPORT_CHROMIUM ?? '/usr/bin/chromium';

// Quiet and offline: no sandbox (root in CI), no GPU, and none of the
// background traffic Chromium makes on its own (updates, sync, field trials).
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** Why Chromium cannot be used here, or null when it can. */
export function chromiumMissing(): string | null {
  return existsSync(CHROMIUM)
    ? null
    : `Chromium is not installed at ${CHROMIUM} (apt-get install chromium; npm test installs it as root in CI or with REUSEPORT_INSTALL_CHROMIUM=1)`;
}

/** A fresh profile in a temporary folder; `close` removes it. */
export async function launchChromium(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'reuseport-chromium-'));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      timeout: 60_000,
    });
    return {
      context,
      close: async () => {
        await context.close();
        rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
}

/** A new page, with every request the browser makes and every console error or warning and page error recorded. */
export async function watchedPage(
  context: BrowserContext,
): Promise<{ page: Page; requests: string[]; problems: string[] }> {
  const requests: string[] = [];
  context.on('request', (request) => requests.push(request.url()));
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(message.text());
  });
  page.on('pageerror', (err) => problems.push(err.message));
  return { page, requests, problems };
}
