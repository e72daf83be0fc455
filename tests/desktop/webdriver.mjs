// A small W3C WebDriver client: enough to drive the desktop app's real window through
// tauri-driver and WebKitWebDriver (new session, find, click, type, read, screenshot).

import fs from 'node:fs';
import net from 'node:net';

const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

export class WebDriver {
  constructor(url, sessionId) {
    this.url = url;
    this.sessionId = sessionId;
  }

  static async start(url, application, args = []) {
    const answer = await call(url, 'POST', '/session', {
      capabilities: {
        alwaysMatch: { browserName: 'wry', 'tauri:options': { application, args } },
      },
    });
    return new WebDriver(url, answer.sessionId);
  }

  command(method, path, body) {
    return call(this.url, method, `/session/${this.sessionId}${path}`, body);
  }

  async quit() {
    await this.command('DELETE', '');
  }

  async title() {
    return this.command('GET', '/title');
  }

  /** The first element matching a CSS selector, waiting up to `timeout` ms for it. */
  async find(selector, timeout = 20000) {
    const deadline = Date.now() + timeout;
    for (;;) {
      try {
        const found = await this.command('POST', '/element', { using: 'css selector', value: selector });
        return new Element(this, found[ELEMENT]);
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`no element ${selector}: ${error.message}`);
        await sleep(200);
      }
    }
  }

  /** Waits until `predicate()` resolves truthy. */
  async until(what, predicate, timeout = 30000) {
    const deadline = Date.now() + timeout;
    for (;;) {
      try {
        const value = await predicate();
        if (value) return value;
      } catch {
        // not there yet
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(250);
    }
  }

  async text(selector) {
    return (await this.find(selector)).text();
  }

  async pageText() {
    return this.command('POST', '/execute/sync', { script: 'return document.body.innerText', args: [] });
  }

  async screenshot(path) {
    const png = await this.command('GET', '/screenshot');
    fs.writeFileSync(path, Buffer.from(png, 'base64'));
  }
}

class Element {
  constructor(driver, id) {
    this.driver = driver;
    this.id = id;
  }

  click() {
    return this.driver.command('POST', `/element/${this.id}/click`, {});
  }

  async clear() {
    await this.driver.command('POST', `/element/${this.id}/clear`, {});
  }

  async type(text) {
    await this.clear();
    await this.driver.command('POST', `/element/${this.id}/value`, { text });
  }

  text() {
    return this.driver.command('GET', `/element/${this.id}/text`);
  }
}

async function call(base, method, path, body) {
  const response = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok || (answer.value && answer.value.error)) {
    const error = answer.value || {};
    throw new Error(`${method} ${path}: ${error.error || response.status} ${error.message || ''}`);
  }
  return answer.value;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A loopback port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}
