// The one boundary between the UI and Kith. Two implementations: the desktop app's
// commands (tauri.ts) and the HTTP setup and admin APIs (http.ts). Every type comes from
// the Rust types (generated/, by ts-rs); no rule of the server is repeated here.

import type { AdminCheck } from './generated/AdminCheck';
import type { Applied } from './generated/Applied';
import type { ConfigText } from './generated/ConfigText';
import type { Destination } from './generated/Destination';
import type { LogLine } from './generated/LogLine';
import type { Manifest } from './generated/Manifest';
import type { PortMapReport } from './generated/PortMapReport';
import type { AnswerProblem } from './generated/AnswerProblem';
import type { ClosedRoom } from './generated/ClosedRoom';
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

/** An error as the UI shows it: a Matrix errcode (or NETWORK, KITH_...) and a sentence. */
export class BackendError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Backend {
  /** "desktop" or "web": the login screen exists only on the web. */
  readonly kind: 'desktop' | 'web';
  /** Whether a setup token (from the setup link) is at hand. */
  hasSetupToken(): boolean;
  /** Whether the UI holds an admin's login (always on the desktop). */
  loggedIn(): boolean;
  /** Calls `handler` on each server event (started, federation health, certificate,
   * stopping, stopped), where the backend pushes them (the desktop app); returns a
   * function that stops listening. The web UI polls instead. */
  onServerEvent?(handler: (event: unknown) => void): () => void;

  setupState(): Promise<SetupState>;
  setupAnswers(): Promise<SetupAnswers>;
  checkSetup(answers: SetupAnswers): Promise<SetupCheck>;
  checkAdmin(username: string, password: string, serverName: string): Promise<AdminCheck>;
  federationCheck(serverName: string): Promise<Report>;
  portMapping(ports: [number, number][]): Promise<PortMapReport>;
  /** Writes the config; the server restarts, and this resolves once it answers again. */
  applySetup(answers: SetupAnswers): Promise<Applied>;
  createFirstAdmin(username: string, password: string): Promise<UiLogin>;

  login(username: string, password: string): Promise<void>;
  logout(): Promise<void>;

  status(): Promise<Status>;
  stats(): Promise<Stats>;
  users(): Promise<UserSummary[]>;
  createUser(username: string, password: string, admin: boolean): Promise<UserSummary>;
  resetPassword(userId: string, password: string): Promise<void>;
  deactivateUser(userId: string): Promise<void>;
  setAdmin(userId: string, admin: boolean): Promise<void>;
  tokens(): Promise<RegistrationToken[]>;
  createToken(usesAllowed: number | null, expiryTs: number | null): Promise<RegistrationToken>;
  revokeToken(token: string): Promise<void>;
  rooms(): Promise<RoomSummary[]>;
  roomMembers(roomId: string): Promise<RoomMember[]>;
  /** Every user of this server leaves the room; its aliases and directory entry here go. */
  closeRoom(roomId: string): Promise<ClosedRoom>;
  /** Closes the room, then removes it and its history from this server. */
  deleteRoom(roomId: string): Promise<ClosedRoom>;
  destinations(): Promise<Destination[]>;
  checkFederation(serverName: string): Promise<Report>;
  logs(after: number, level: string): Promise<LogLine[]>;
  configText(): Promise<ConfigText>;
  checkConfig(text: string): Promise<AnswerProblem[]>;
  /** Writes the config file; the server restarts, and this resolves once it answers. */
  saveConfig(text: string): Promise<void>;
  restart(): Promise<void>;
  /** Makes a backup: on the web it downloads; on the desktop it is written to `path` (or
   * the documents folder). Resolves with where it went. */
  backup(path?: string): Promise<string>;
  /** Restores a backup (an uploaded file on the web, a path on the desktop); the server
   * restarts with it, and this resolves once it answers again. */
  restore(source: File | string): Promise<Manifest>;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
