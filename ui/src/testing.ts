// An in-memory Backend for component tests only (the end-to-end tests use the real server).

import type { Backend } from './lib/api';
import type { SetupAnswers } from './lib/api/generated/SetupAnswers';

export type Calls = string[];

export function answers(): SetupAnswers {
  return {
    kind: 'lan',
    server_name: 'localhost',
    reachability: 'direct',
    delegated_host: '',
    client_listen: '127.0.0.1:8008',
    federation_port: 8448,
    tls_mode: 'self-signed',
    certificate_file: '',
    private_key_file: '',
    acme_contact: '',
    registration: 'closed',
    public_ipv4: '',
  };
}

/** A backend whose every method records its call; override what a test needs. */
export function fakeBackend(calls: Calls, overrides: Partial<Backend> = {}): Backend {
  const record =
    (name: string, value: unknown = {}) =>
    async (...args: unknown[]) => {
      calls.push(`${name}${args.length ? ' ' + JSON.stringify(args) : ''}`);
      return value as never;
    };
  return {
    kind: 'web',
    hasSetupToken: () => true,
    loggedIn: () => true,
    setupState: record('setupState', { needs_setup: true, server_name: 'localhost', version: '0.1.0' }),
    setupAnswers: record('setupAnswers', answers()),
    checkSetup: record('checkSetup', { problems: [], warnings: [], delegation: null }),
    checkAdmin: record('checkAdmin', {
      problems: [],
      strength: { score: 3, label: 'strong', acceptable: true, suggestions: [] },
      user_id: '@alice:family.test',
    }),
    federationCheck: record('federationCheck'),
    portMapping: record('portMapping'),
    applySetup: record('applySetup', { config_file: '/tmp/kith.toml', restarting: true }),
    createFirstAdmin: record('createFirstAdmin', { user_id: '@alice:family.test', access_token: 't', device_id: 'D' }),
    login: record('login'),
    logout: record('logout'),
    status: record('status', null),
    stats: record('stats', { interval_secs: 10, samples: [] }),
    users: record('users', []),
    createUser: record('createUser'),
    resetPassword: record('resetPassword'),
    deactivateUser: record('deactivateUser'),
    setAdmin: record('setAdmin'),
    tokens: record('tokens', []),
    createToken: record('createToken', { token: 'abc', uses_allowed: 5, completed: 0, expiry_ts: null, valid: true }),
    revokeToken: record('revokeToken'),
    rooms: record('rooms', []),
    roomMembers: record('roomMembers', []),
    closeRoom: record('closeRoom', { left: [], aliases_removed: [], events_removed: 0 }),
    deleteRoom: record('deleteRoom', { left: [], aliases_removed: [], events_removed: 0 }),
    destinations: record('destinations', []),
    checkFederation: record('checkFederation'),
    logs: record('logs', []),
    configText: record('configText', { path: '/tmp/kith.toml', text: '' }),
    checkConfig: record('checkConfig', []),
    saveConfig: record('saveConfig'),
    restart: record('restart'),
    backup: record('backup', 'Downloaded kith-backup.tar.'),
    restore: record('restore', { server_name: 'family.test', created_ts: 0, version: '0.1.0' }),
    ...overrides,
  };
}
