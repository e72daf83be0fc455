// The Backend in the desktop app: Kith's commands (src-tauri/src/commands.rs), one per call
// of the HTTP API, with the same answers. Tauri names command arguments in camelCase.

import { Backend, BackendError } from './backend';
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

interface TauriGlobal {
  core: { invoke(command: string, args?: Record<string, unknown>): Promise<unknown> };
  event?: { listen(name: string, handler: (event: { payload: unknown }) => void): Promise<() => void> };
}

export function tauriGlobal(): TauriGlobal | undefined {
  return (window as unknown as { __TAURI__?: TauriGlobal }).__TAURI__;
}

export class TauriBackend implements Backend {
  readonly kind = 'desktop' as const;

  constructor(private readonly tauri: TauriGlobal) {}

  private async call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
    try {
      return (await this.tauri.core.invoke(command, args)) as T;
    } catch (error) {
      const { code, message } = (error ?? {}) as { code?: string; message?: string };
      throw new BackendError(code ?? 'KITH_DESKTOP', message ?? String(error));
    }
  }

  /** Server events (started, federation health, certificate, stopping, stopped). */
  onServerEvent(handler: (event: unknown) => void): () => void {
    let stop: (() => void) | null = null;
    let stopped = false;
    void this.tauri.event?.listen('server-event', (event) => handler(event.payload)).then((unlisten) => {
      if (stopped) unlisten();
      else stop = unlisten;
    });
    return () => {
      stopped = true;
      stop?.();
    };
  }

  hasSetupToken(): boolean {
    return true; // the desktop app is trusted: no link is needed
  }
  loggedIn(): boolean {
    return true;
  }

  setupState(): Promise<SetupState> {
    return this.call('setup_state');
  }
  setupAnswers(): Promise<SetupAnswers> {
    return this.call('setup_answers');
  }
  checkSetup(answers: SetupAnswers): Promise<SetupCheck> {
    return this.call('check_setup', { answers });
  }
  checkAdmin(username: string, password: string, serverName: string): Promise<AdminCheck> {
    return this.call('check_admin', { username, password, serverName });
  }
  federationCheck(serverName: string): Promise<Report> {
    return this.call('federation_check', { serverName });
  }
  portMapping(ports: [number, number][]): Promise<PortMapReport> {
    return this.call('port_mapping', { ports });
  }
  applySetup(answers: SetupAnswers): Promise<Applied> {
    return this.call('apply_setup', { answers });
  }
  createFirstAdmin(username: string, password: string): Promise<UiLogin> {
    return this.call('create_first_admin', { username, password });
  }
  async login(): Promise<void> {}
  async logout(): Promise<void> {}
  status(): Promise<Status> {
    return this.call('status');
  }
  stats(): Promise<Stats> {
    return this.call('stats');
  }
  users(): Promise<UserSummary[]> {
    return this.call('users');
  }
  createUser(username: string, password: string, admin: boolean): Promise<UserSummary> {
    return this.call('create_user', { username, password, admin });
  }
  resetPassword(userId: string, password: string): Promise<void> {
    return this.call('reset_password', { userId, password });
  }
  deactivateUser(userId: string): Promise<void> {
    return this.call('deactivate_user', { userId });
  }
  setAdmin(userId: string, admin: boolean): Promise<void> {
    return this.call('set_admin', { userId, admin });
  }
  tokens(): Promise<RegistrationToken[]> {
    return this.call('tokens');
  }
  createToken(usesAllowed: number | null, expiryTs: number | null): Promise<RegistrationToken> {
    return this.call('create_token', { usesAllowed, expiryTs });
  }
  revokeToken(token: string): Promise<void> {
    return this.call('revoke_token', { token });
  }
  rooms(): Promise<RoomSummary[]> {
    return this.call('rooms');
  }
  roomMembers(roomId: string): Promise<RoomMember[]> {
    return this.call('room_members', { roomId });
  }
  closeRoom(roomId: string): Promise<ClosedRoom> {
    return this.call('close_room', { roomId });
  }
  deleteRoom(roomId: string): Promise<ClosedRoom> {
    return this.call('delete_room', { roomId });
  }
  destinations(): Promise<Destination[]> {
    return this.call('destinations');
  }
  checkFederation(serverName: string): Promise<Report> {
    return this.call('check_federation', { serverName });
  }
  logs(after: number, level: string): Promise<LogLine[]> {
    return this.call('logs', { after, level });
  }
  configText(): Promise<ConfigText> {
    return this.call('config_text');
  }
  checkConfig(text: string): Promise<AnswerProblem[]> {
    return this.call('check_config', { text });
  }
  async saveConfig(text: string): Promise<void> {
    await this.call('save_config', { text });
  }
  async restart(): Promise<void> {
    await this.call('restart');
  }
  async backup(path?: string): Promise<string> {
    const saved = await this.call<{ path: string }>('backup', { path: path || null });
    return `Saved ${saved.path}.`;
  }
  restore(source: File | string): Promise<Manifest> {
    if (typeof source !== 'string') throw new BackendError('M_INVALID_PARAM', 'Give the path of the backup file.');
    return this.call('restore', { path: source });
  }
}
