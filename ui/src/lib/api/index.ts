// Picks the Backend: the desktop app's commands inside Tauri, else the HTTP API.

import type { Backend } from './backend';
import { HttpBackend } from './http';
import { TauriBackend, tauriGlobal } from './tauri';

export type { Backend } from './backend';
export { BackendError } from './backend';

export function makeBackend(): Backend {
  const tauri = tauriGlobal();
  if (tauri) return new TauriBackend(tauri);
  const http = new HttpBackend();
  http.readSetupLink(window.location, window.history);
  return http;
}
