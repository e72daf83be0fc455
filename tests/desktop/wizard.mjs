// The desktop app's first run in its real window (Tauri's webview, WebKitGTK), driven by
// tauri-driver and WebKitWebDriver: with no config, the app opens the wizard; a newcomer
// completes it; the server runs with its admin and a registration token. Screenshots of
// each step go to $SHOTS. Run by tests/desktop/in-session.sh (X server, D-Bus session).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { WebDriver, freePort, sleep } from './webdriver.mjs';

const APP = process.env.APP;
const WORK = process.env.WORK;
const SHOTS = process.env.SHOTS;

async function waitForDriver(url) {
  for (let i = 0; i < 100; i++) {
    try {
      const answer = await fetch(`${url}/status`);
      if (answer.ok) return;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  throw new Error('tauri-driver did not start');
}

test('a newcomer completes the wizard in the real window', { timeout: 240000 }, async () => {
  const home = path.join(WORK, 'wizard-home');
  const config = path.join(WORK, 'wizard', 'kith.toml');
  fs.mkdirSync(home, { recursive: true });
  const port = await freePort();
  const nativePort = await freePort();
  const driverLog = fs.openSync(path.join(WORK, 'tauri-driver.log'), 'w');
  const driverProcess = spawn(
    'tauri-driver',
    ['--port', String(port), '--native-port', String(nativePort)],
    { env: { ...process.env, HOME: home }, stdio: ['ignore', driverLog, driverLog] },
  );
  const url = `http://127.0.0.1:${port}`;
  let driver;
  try {
    await waitForDriver(url);
    driver = await WebDriver.start(url, APP, ['--config', config]);
    assert.equal(await driver.title(), 'Kith');
    await driver.screenshot(path.join(SHOTS, 'desktop-0-first-window.png'));
    const { completeWizard } = await import('./wizard-steps.mjs');
    await completeWizard(driver, { shots: SHOTS, config });
  } finally {
    if (driver) await driver.quit().catch(() => {});
    driverProcess.kill('SIGTERM');
  }
});
