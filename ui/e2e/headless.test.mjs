// The wizard and the dashboard in headless Chromium against a real `kith serve` on
// loopback: no mocks. A newcomer opens the one-time setup link, completes the wizard
// (the server restarts with the new config), lands on the dashboard, creates a user,
// and sees the charts and the user list. Screenshots go to e2e/screenshots/.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const here = path.dirname(new URL(import.meta.url).pathname);
const SHOTS = path.join(here, 'screenshots');
const KITH =
  process.env.KITH_BIN ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/kith-target'), 'debug/kith');

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Starts `kith serve` and resolves with the setup link it prints. */
function serve(config) {
  const child = spawn(KITH, ['serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-20000);
  });
  const link = new Promise((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`no setup link within 60 s:\n${stdout}\n${stderr}`)), 60000);
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      const match = /(http:\/\/\S+#setup=\S+)/.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`kith serve ended (${code}):\n${stdout}\n${stderr}`)));
  });
  return { child, link, log: () => stderr };
}

test('a newcomer sets up Kith in a browser and manages users from the dashboard', { timeout: 180000 }, async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kith-ui-e2e-'));
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'kith-ui-chromium-'));
  const port = await freePort();
  const config = path.join(dir, 'kith.toml');
  execFileSync(KITH, ['init', '--server-name', 'localhost', '--data-dir', dir, '--client-listen', `127.0.0.1:${port}`, '--config', config]);
  const server = serve(config);
  const context = await chromium.launchPersistentContext(profile, {
    acceptDownloads: true,
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1200, height: 860 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  try {
    const link = await server.link;
    const page = context.pages()[0] || (await context.newPage());
    await page.goto(link);

    // 1. Welcome
    await page.getByTestId('step-welcome').waitFor();
    assert.ok(!page.url().includes('#setup='), 'the token leaves the address bar');
    assert.equal(await page.getByTestId('stepper').locator('li').count(), 7);
    await shot(page, 'wizard-1-welcome');
    await page.getByTestId('next').click();

    // 2. Server name: a name Kith refuses is reported next to its field and blocks Next.
    await page.getByTestId('step-name').waitFor();
    await page.getByTestId('kind-lan').check({ force: true });
    await page.getByTestId('server_name').fill('not a name');
    await page.getByTestId('next').click();
    await page.getByTestId('server_name-problem').waitFor();
    assert.ok(await page.getByTestId('step-name').isVisible(), 'a problem keeps the user on the step');
    await shot(page, 'wizard-2-name-problem');

    // A look at the federating path first: own domain, delegated from its website.
    await page.getByTestId('kind-domain').check({ force: true });
    await page.getByTestId('server_name').fill('family.test');
    await page.getByTestId('reachability-well_known').check({ force: true });
    await page.getByTestId('delegated_host').fill('matrix.family.test');
    await page.getByText('`family.test` can never change').waitFor();
    assert.equal(await page.getByTestId('server_name-problem').count(), 0, 'an edited answer drops its old problem');
    await shot(page, 'wizard-2-name-domain');
    await page.getByTestId('next').click();
    await page.getByTestId('step-network').waitFor();
    await page.getByTestId('federation_port').fill('8448');
    await page.getByTestId('tls_mode-acme').check({ force: true });
    await page.getByTestId('acme_contact').waitFor();
    await page.getByText('The automatic certificate is proven on port 443').waitFor();
    await shot(page, 'wizard-3-network-domain');
    await page.getByTestId('next').click();
    // 4. DNS: what to publish, from Kith's delegation plan.
    await page.getByTestId('step-dns').waitFor();
    await page.getByTestId('records').waitFor();
    assert.match(await page.getByTestId('records').textContent(), /matrix\.family\.test/);
    await page.getByText('.well-known/matrix/server').first().waitFor();
    await shot(page, 'wizard-4-dns');
    // "Check now" runs the real checker: nothing is published for family.test yet, so the
    // report fails, step by step, and gives the fix.
    await page.getByTestId('check-now').click();
    await page.getByTestId('report').waitFor({ timeout: 60000 });
    assert.ok((await page.getByTestId('step').count()) > 0, 'the report lists its steps');
    assert.match(await page.getByTestId('verdict').textContent(), /cannot reach|needs attention/);
    await shot(page, 'wizard-4-dns-checked');
    await page.getByTestId('back').click();
    await page.getByTestId('step-network').waitFor();
    await page.getByTestId('back').click();
    await page.getByTestId('step-name').waitFor();
    assert.equal(await page.getByTestId('server_name').inputValue(), 'family.test', 'Back keeps the name');

    // Then LAN only, as this family wants.
    await page.getByTestId('kind-lan').check({ force: true });
    await page.getByText('LAN only: people on other servers cannot join your rooms').waitFor();
    await shot(page, 'wizard-2-name');
    await page.getByTestId('next').click();

    // 3. Network: LAN only keeps the client address; no federation questions.
    await page.getByTestId('step-network').waitFor();
    assert.equal(await page.getByTestId('client_listen').inputValue(), `127.0.0.1:${port}`);
    assert.equal(await page.getByTestId('federation_port').count(), 0);
    await shot(page, 'wizard-3-network');
    await page.getByTestId('next').click();

    // 5 (LAN: no DNS step, both ways). Admin: the strength meter comes from Kith.
    await page.getByTestId('step-admin').waitFor();
    await page.getByTestId('back').click();
    await page.getByTestId('step-network').waitFor();
    await page.getByTestId('next').click();
    await page.getByTestId('step-admin').waitFor();
    await page.getByTestId('admin_username').fill('alice');
    await page.getByTestId('admin_password').fill('alice1');
    await page.getByTestId('strength-label').waitFor();
    assert.equal(await page.getByTestId('strength-label').textContent(), 'very weak');
    await page.getByTestId('admin_confirm').fill('alice1');
    await page.getByTestId('next').click();
    await page.getByTestId('admin_password-problem').waitFor();
    await shot(page, 'wizard-5-admin-weak');
    await page.getByTestId('admin_password').fill('correct horse battery staple');
    await page.waitForFunction(() => document.querySelector('[data-testid=strength-label]')?.textContent !== 'very weak');
    await page.getByTestId('admin_confirm').fill('correct horse battery staple');
    assert.equal(await page.getByTestId('user-id').textContent(), 'Your user ID will be @alice:family.test.');
    await shot(page, 'wizard-5-admin');
    await page.getByTestId('next').click();

    // Back and forward keep what was entered.
    await page.getByTestId('step-join').waitFor();
    await page.getByTestId('back').click();
    await page.getByTestId('step-admin').waitFor();
    assert.equal(await page.getByTestId('admin_username').inputValue(), 'alice');
    await page.getByTestId('next').click();

    // 6. Who may join: invite tokens; Finish saves, restarts, and makes the admin.
    await page.getByTestId('step-join').waitFor();
    await page.getByTestId('registration-token').check({ force: true });
    await shot(page, 'wizard-6-join');
    await page.getByTestId('next').click();

    // 7. Done.
    await page.getByTestId('done').waitFor({ timeout: 60000 });
    assert.equal(await page.getByTestId('done-admin').textContent(), '@alice:family.test');
    assert.match(await page.getByTestId('done-token').textContent(), /^[A-Za-z0-9]{16}$/);
    await page.getByTestId('qr').waitFor();
    await shot(page, 'wizard-7-done');

    // The dashboard: overview with the charts.
    await page.getByTestId('to-dashboard').click();
    await page.getByTestId('page-overview').waitFor();
    await page.getByTestId('state').waitFor();
    await page.locator('[data-testid=chart-rss] canvas').waitFor();
    assert.match(await page.getByTestId('state').textContent(), /family\.test/);
    await shot(page, 'dashboard-overview');

    // Users: a weak password is refused with Kith's reason; a good one makes the account.
    await page.getByTestId('nav-users').click();
    await page.getByTestId('users').waitFor();
    await page.getByTestId('new_username').fill('bob');
    await page.getByTestId('new_password').fill('bob');
    await page.getByTestId('create-user-submit').click();
    await page.getByTestId('create-user-error').waitFor();
    await page.getByTestId('new_password').fill('another long passphrase 42');
    await page.getByTestId('create-user-submit').click();
    await page.getByText('@bob:family.test').waitFor();
    const rows = await page.getByTestId('user-row').allTextContents();
    assert.equal(rows.length, 2, rows.join('\n'));
    assert.equal((await page.getByTestId('token-row').allTextContents()).length, 1);
    await shot(page, 'dashboard-users');

    // Backup: downloaded while running; carol, made afterwards, is gone after the restore.
    await page.getByTestId('nav-backup').click();
    await page.getByTestId('page-backup').waitFor();
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('backup').click()]);
    assert.match(download.suggestedFilename(), /^kith-backup-family\.test-\d+\.tar$/);
    const backupFile = path.join(dir, 'backup.tar');
    await download.saveAs(backupFile);
    await page.getByTestId('backup-done').waitFor();
    await shot(page, 'dashboard-backup');
    await page.getByTestId('nav-users').click();
    await page.getByTestId('new_username').fill('carol');
    await page.getByTestId('new_password').fill('yet another long passphrase');
    await page.getByTestId('create-user-submit').click();
    await page.getByText('@carol:family.test').waitFor();
    await page.getByTestId('nav-backup').click();
    await page.getByTestId('restore_file').setInputFiles(backupFile);
    await page.getByTestId('restore').click();
    await page.getByTestId('backup-done').waitFor({ timeout: 60000 });
    assert.match(await page.getByTestId('backup-done').textContent(), /Restored the backup of family\.test/);
    await page.getByTestId('nav-users').click();
    await page.getByText('@bob:family.test').waitFor();
    assert.equal(await page.getByText('@carol:family.test').count(), 0);

    // Rooms: alice makes one with a real Matrix call and invites bob; the dashboard lists it
    // and shows its members.
    const token = await page.evaluate(() => sessionStorage.getItem('kith.access_token'));
    assert.ok(token, 'the admin is logged in');
    const created = await fetch(`http://127.0.0.1:${port}/_matrix/client/v3/createRoom`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Family', preset: 'private_chat', invite: ['@bob:family.test'] }),
    });
    assert.equal(created.status, 200, await created.clone().text());
    await page.getByTestId('nav-rooms').click();
    await page.getByTestId('page-rooms').waitFor();
    await page.getByTestId('room-row').filter({ hasText: 'Family' }).click();
    await page.getByTestId('members').waitFor();
    assert.match(await page.getByTestId('members').textContent(), /@alice:family\.test.*join/s);
    assert.match(await page.getByTestId('members').textContent(), /@bob:family\.test.*invite/s);
    await shot(page, 'dashboard-rooms');
    // A second room, deleted from the dashboard: gone from the list, and alice has left it.
    const scratch = await fetch(`http://127.0.0.1:${port}/_matrix/client/v3/createRoom`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Old plans' }),
    });
    assert.equal(scratch.status, 200, await scratch.clone().text());
    const scratchId = (await scratch.json()).room_id;
    await page.getByTestId('nav-users').click();
    await page.getByTestId('nav-rooms').click();
    await page.getByTestId('room-row').filter({ hasText: 'Old plans' }).click();
    await page.getByTestId('delete-room').click();
    await page.getByTestId('delete-room-confirm').click();
    assert.match(await page.getByTestId('room-closed').textContent(), /left Old plans; deleted it and its \d+ events/);
    await page.getByTestId('room-row').filter({ hasText: 'Family' }).waitFor();
    assert.equal(await page.getByTestId('room-row').filter({ hasText: 'Old plans' }).count(), 0);
    const joined = await fetch(`http://127.0.0.1:${port}/_matrix/client/v3/joined_rooms`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.ok(!(await joined.json()).joined_rooms.includes(scratchId), 'alice left the deleted room');

    // Federation: the checker's report, step by step, for an address on this machine (a
    // LAN-only server has no federation listener, so it fails, and says why).
    await page.getByTestId('nav-federation').click();
    await page.getByTestId('page-federation').waitFor();
    await page.getByTestId('check_name').fill(`127.0.0.1:${port}`);
    await page.getByTestId('check').click();
    await page.getByTestId('report').waitFor({ timeout: 60000 });
    assert.ok((await page.getByTestId('step').count()) > 0, 'the report lists its steps');
    assert.match(await page.getByTestId('verdict').textContent(), /cannot reach|needs attention/);
    await shot(page, 'dashboard-federation');

    for (const name of ['logs', 'settings']) {
      await page.getByTestId(`nav-${name}`).click();
      await page.getByTestId(`page-${name}`).waitFor();
      if (name === 'logs') await page.getByText('Kith is serving').first().waitFor();
      if (name === 'settings') await page.getByTestId('config').waitFor();
      await shot(page, `dashboard-${name}`);
    }

    // A reload keeps the login for this tab (sessionStorage).
    await page.reload();
    await page.getByTestId('page-overview').waitFor();

    // Logging out leads to the login screen; logging in again leads back.
    await page.getByTestId('logout').click();
    await page.getByTestId('login').waitFor();
    await page.getByTestId('login_username').fill('bob');
    await page.getByTestId('login_password').fill('another long passphrase 42');
    await page.getByTestId('login-submit').click();
    assert.equal(await page.getByTestId('login-error').textContent(), 'This account is not a server admin.');
    await page.getByTestId('login_username').fill('alice');
    await page.getByTestId('login_password').fill('correct horse battery staple');
    await page.getByTestId('login-submit').click();
    await page.getByTestId('page-overview').waitFor();
  } catch (error) {
    error.message += `\n--- kith serve's log (tail):\n${server.log().slice(-4000)}`;
    throw error;
  } finally {
    await context.close();
    if (server.child.exitCode === null && server.child.signalCode === null) {
      const exited = new Promise((resolve) => server.child.once('exit', resolve));
      process.kill(server.child.pid, 'SIGTERM');
      const late = setTimeout(() => server.child.kill('SIGKILL'), 15000);
      await exited;
      clearTimeout(late);
    }
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(profile, { recursive: true, force: true });
  }
});
