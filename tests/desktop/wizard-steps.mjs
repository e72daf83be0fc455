// The wizard's steps as a newcomer takes them in the desktop app's window.

import assert from 'node:assert/strict';
import path from 'node:path';
import { freePort } from './webdriver.mjs';

const id = (testid) => `[data-testid="${testid}"]`;
/** Radio cards hide their input: a user clicks the card (the label). */
const card = (testid) => `label:has(${id(testid)})`;

export async function completeWizard(driver, { shots }) {
  const shot = (name) => driver.screenshot(path.join(shots, `desktop-${name}.png`));
  const next = async () => (await driver.find(id('next'))).click();

  await driver.find(id('step-welcome'));
  await shot('1-welcome');
  await next();

  await driver.find(id('step-name'));
  await (await driver.find(card('kind-lan'))).click();
  await (await driver.find(id('server_name'))).type('home.test');
  await shot('2-name');
  await next();

  await driver.find(id('step-network'));
  const port = await freePort();
  await (await driver.find(id('client_listen'))).type(`127.0.0.1:${port}`);
  await shot('3-network');
  await next();

  await driver.find(id('step-admin'));
  await (await driver.find(id('admin_username'))).type('mum');
  await (await driver.find(id('admin_password'))).type('tea kettle on the windowsill');
  await (await driver.find(id('admin_confirm'))).type('tea kettle on the windowsill');
  await driver.until('the strength meter', async () => (await driver.text(id('strength-label'))) !== '');
  await shot('4-admin');
  await next();

  await driver.find(id('step-join'));
  await (await driver.find(card('registration-token'))).click();
  await shot('5-join');
  await next();

  await driver.find(id('done'), 60000);
  assert.equal(await driver.text(id('done-admin')), '@mum:home.test');
  assert.match(await driver.text(id('done-token')), /^[A-Za-z0-9]{16}$/);
  await shot('6-done');

  // The server the wizard configured answers Matrix clients.
  const versions = await fetch(`http://127.0.0.1:${port}/_matrix/client/versions`);
  assert.equal(versions.status, 200);

  await (await driver.find(id('to-dashboard'))).click();
  await driver.find(id('state'));
  await driver.find(`${id('chart-rss')} canvas`);
  assert.match(await driver.text(id('state')), /home\.test/);
  await shot('7-dashboard');
  await (await driver.find(id('nav-users'))).click();
  await driver.until('the admin in the user list', async () => (await driver.text(id('users'))).includes('@mum:home.test'));
  await shot('8-users');
}
