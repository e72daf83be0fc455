// The Backend over HTTP: Kith's setup API (with the setup link's token), its admin API
// (with an admin's access token from the Matrix login), on the same origin.

import { Backend, BackendError, sleep } from './backend';
import type { AdminCheck } from './generated/AdminCheck';
import type { AnswerProblem } from './generated/AnswerProblem';
import type { ClosedRoom } from './generated/ClosedRoom';
import type { Applied } from './generated/Applied';
import type { ConfigText } from './generated/ConfigText';
import type { Destination } from './generated/Destination';
import type { LogLine } from './generated/LogLine';
import type { Manifest } from './generated/Manifest';
import type { PortMapReport } from './generated/PortMapReport';
import type { RegistrationToken } from './generated/RegistrationToken';
import type { Report } from './generated/Report';
import type { RoomMember } from './generated/RoomMember';
import type { RoomSummary } from './generated/RoomSummary';
import type { SetupAnswers } from './generated/SetupAnswers';
import type { SetupCheck } from './generated/SetupCheck';
import type { SetupState } from './generated/SetupState';
import type { Stats } from './generated/Stats';
import type { Status } from './generated/Status';
import type { UiLogin } from './generated/UiLogin';
import type { UserSummary } from './generated/UserSummary';

const SETUP_KEY = 'kith.setup_token';
const ACCESS_KEY = 'kith.access_token';

type Fetch = typeof fetch;

export class HttpBackend implements Backend {
  readonly kind = 'web' as const;

  constructor(
    private readonly base = '',
    private readonly fetcher: Fetch = (...args) => fetch(...args),
    private readonly store: Storage = sessionStorage,
  ) {}

  /** Takes the setup token from the address (`#setup=TOKEN`) and removes it from there. */
  readSetupLink(location: Location, history: History): void {
    const match = /(?:^#|&)setup=([^&]+)/.exec(location.hash);
    if (match) {
      this.store.setItem(SETUP_KEY, decodeURIComponent(match[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
  }

  hasSetupToken(): boolean {
    return this.store.getItem(SETUP_KEY) !== null;
  }

  loggedIn(): boolean {
    return this.store.getItem(ACCESS_KEY) !== null;
  }

  private async request<T>(method: string, path: string, body?: unknown, token?: string | null): Promise<T> {
    const headers: Record<string, string> = {};
    const bearer = token === undefined ? this.store.getItem(ACCESS_KEY) ?? this.store.getItem(SETUP_KEY) : token;
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await this.fetcher(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new BackendError('NETWORK', 'Kith does not answer. Is it running?');
    }
    let answer: unknown = null;
    try {
      answer = await response.json();
    } catch {
      answer = null;
    }
    if (!response.ok) {
      const error = (answer ?? {}) as { errcode?: string; error?: string };
      if (error.errcode === 'M_UNKNOWN_TOKEN' && this.store.getItem(ACCESS_KEY)) {
        this.store.removeItem(ACCESS_KEY);
      }
      throw new BackendError(error.errcode ?? `HTTP_${response.status}`, error.error ?? `Kith answered ${response.status}.`);
    }
    return answer as T;
  }

  private setup<T>(method: string, path: string, body?: unknown): Promise<T> {
    const token = this.store.getItem(SETUP_KEY) ?? this.store.getItem(ACCESS_KEY);
    return this.request<T>(method, `/_kith/setup/v1/${path}`, body, token);
  }

  private admin<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.request<T>(method, `/_kith/admin/v1/${path}`, body, this.store.getItem(ACCESS_KEY));
  }

  setupState(): Promise<SetupState> {
    return this.request('GET', '/_kith/setup/v1/state', undefined, null);
  }
  setupAnswers(): Promise<SetupAnswers> {
    return this.setup('GET', 'answers');
  }
  checkSetup(answers: SetupAnswers): Promise<SetupCheck> {
    return this.setup('POST', 'check', answers);
  }
  checkAdmin(username: string, password: string, serverName: string): Promise<AdminCheck> {
    return this.request('POST', '/_kith/setup/v1/check_admin', { username, password, server_name: serverName }, null);
  }
  federationCheck(serverName: string): Promise<Report> {
    return this.setup('GET', `federation_check?server_name=${encodeURIComponent(serverName)}`);
  }
  portMapping(ports: [number, number][]): Promise<PortMapReport> {
    return this.setup('POST', 'port_mapping', { ports });
  }
  async applySetup(answers: SetupAnswers): Promise<Applied> {
    const applied = await this.setup<Applied>('POST', 'apply', answers);
    await this.waitForRestart();
    return applied;
  }
  async createFirstAdmin(username: string, password: string): Promise<UiLogin> {
    const login = await this.setup<UiLogin>('POST', 'admin', { username, password });
    this.store.setItem(ACCESS_KEY, login.access_token);
    this.store.removeItem(SETUP_KEY);
    return login;
  }

  /** Waits for the server to go away and come back (up to 30 s). */
  private async waitForRestart(): Promise<void> {
    await sleep(300);
    for (let i = 0; i < 60; i++) {
      try {
        await this.setupState();
        return;
      } catch {
        await sleep(500);
      }
    }
    throw new BackendError('NETWORK', 'Kith did not come back after restarting; look at its log.');
  }

  async login(username: string, password: string): Promise<void> {
    const answer = await this.request<{ access_token: string }>(
      'POST',
      '/_matrix/client/v3/login',
      {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: username },
        password,
        initial_device_display_name: 'Kith dashboard',
      },
      null,
    );
    this.store.setItem(ACCESS_KEY, answer.access_token);
  }
  async logout(): Promise<void> {
    try {
      await this.request('POST', '/_matrix/client/v3/logout', {});
    } finally {
      this.store.removeItem(ACCESS_KEY);
    }
  }

  status(): Promise<Status> {
    return this.admin('GET', 'status');
  }
  stats(): Promise<Stats> {
    return this.admin('GET', 'stats');
  }
  users(): Promise<UserSummary[]> {
    return this.admin('GET', 'users');
  }
  createUser(username: string, password: string, admin: boolean): Promise<UserSummary> {
    return this.admin('POST', 'users', { username, password, admin });
  }
  async resetPassword(userId: string, password: string): Promise<void> {
    await this.admin('POST', `users/${encodeURIComponent(userId)}/password`, { password });
  }
  async deactivateUser(userId: string): Promise<void> {
    await this.admin('POST', `users/${encodeURIComponent(userId)}/deactivate`, {});
  }
  async setAdmin(userId: string, admin: boolean): Promise<void> {
    await this.admin('PUT', `users/${encodeURIComponent(userId)}/admin`, { admin });
  }
  tokens(): Promise<RegistrationToken[]> {
    return this.admin('GET', 'registration_tokens');
  }
  createToken(usesAllowed: number | null, expiryTs: number | null): Promise<RegistrationToken> {
    return this.admin('POST', 'registration_tokens', { uses_allowed: usesAllowed, expiry_ts: expiryTs });
  }
  async revokeToken(token: string): Promise<void> {
    await this.admin('DELETE', `registration_tokens/${encodeURIComponent(token)}`);
  }
  rooms(): Promise<RoomSummary[]> {
    return this.admin('GET', 'rooms');
  }
  roomMembers(roomId: string): Promise<RoomMember[]> {
    return this.admin('GET', `rooms/${encodeURIComponent(roomId)}/members`);
  }
  closeRoom(roomId: string): Promise<ClosedRoom> {
    return this.admin('POST', `rooms/${encodeURIComponent(roomId)}/close`, {});
  }
  deleteRoom(roomId: string): Promise<ClosedRoom> {
    return this.admin('DELETE', `rooms/${encodeURIComponent(roomId)}`);
  }
  destinations(): Promise<Destination[]> {
    return this.admin('GET', 'federation/destinations');
  }
  checkFederation(serverName: string): Promise<Report> {
    return this.admin('GET', `federation/check?server_name=${encodeURIComponent(serverName)}`);
  }
  logs(after: number, level: string): Promise<LogLine[]> {
    return this.admin('GET', `logs?after=${after}&level=${encodeURIComponent(level)}`);
  }
  configText(): Promise<ConfigText> {
    return this.admin('GET', 'config');
  }
  checkConfig(text: string): Promise<AnswerProblem[]> {
    return this.admin('POST', 'config/check', { text });
  }
  async saveConfig(text: string): Promise<void> {
    await this.admin('PUT', 'config', { text });
    await this.waitForRestart();
  }
  async restart(): Promise<void> {
    await this.admin('POST', 'server/restart', {});
    await this.waitForRestart();
  }

  async backup(): Promise<string> {
    let response: Response;
    try {
      response = await this.fetcher(`${this.base}/_kith/admin/v1/backup`, {
        headers: { authorization: `Bearer ${this.store.getItem(ACCESS_KEY) ?? ''}` },
      });
    } catch {
      throw new BackendError('NETWORK', 'Kith does not answer. Is it running?');
    }
    if (!response.ok) {
      const error = (await response.json().catch(() => ({}))) as { errcode?: string; error?: string };
      throw new BackendError(error.errcode ?? `HTTP_${response.status}`, error.error ?? `Kith answered ${response.status}.`);
    }
    const name = /filename="([^"]+)"/.exec(response.headers.get('content-disposition') ?? '')?.[1] ?? 'kith-backup.tar';
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement('a');
    link.href = url;
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    return `Downloaded ${name}.`;
  }
  async restore(source: File | string): Promise<Manifest> {
    if (typeof source === 'string') throw new BackendError('M_INVALID_PARAM', 'Choose the backup file to upload.');
    let response: Response;
    try {
      response = await this.fetcher(`${this.base}/_kith/admin/v1/restore`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.store.getItem(ACCESS_KEY) ?? ''}`, 'content-type': 'application/x-tar' },
        body: source,
      });
    } catch {
      throw new BackendError('NETWORK', 'Kith does not answer. Is it running?');
    }
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = answer as { errcode?: string; error?: string };
      throw new BackendError(error.errcode ?? `HTTP_${response.status}`, error.error ?? `Kith answered ${response.status}.`);
    }
    await this.waitForRestart();
    return answer as Manifest;
  }
}
