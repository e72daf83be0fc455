// The dashboard: overview with charts, users and tokens, rooms, federation, logs, settings.

import { useState } from 'preact/hooks';
import type { Backend } from '../lib/api';
import { Overview } from './Overview';
import { Users } from './Users';
import { Rooms } from './Rooms';
import { Federation } from './Federation';
import { Logs } from './Logs';
import { Settings } from './Settings';
import { Backup } from './Backup';

const PAGES = ['overview', 'users', 'rooms', 'federation', 'logs', 'settings', 'backup'] as const;
type Page = (typeof PAGES)[number];
const TITLES: Record<Page, string> = {
  overview: 'Overview',
  users: 'Users',
  rooms: 'Rooms',
  federation: 'Federation',
  logs: 'Logs',
  settings: 'Settings',
  backup: 'Backup',
};

export function Dashboard({ backend, onLogout }: { backend: Backend; onLogout: () => void }) {
  const [page, setPage] = useState<Page>('overview');
  return (
    <div class="dashboard">
      <nav>
        <div class="brand">Kith</div>
        {PAGES.map((name) => (
          <button type="button" key={name} class={name === page ? 'current' : ''} data-testid={`nav-${name}`} onClick={() => setPage(name)}>
            {TITLES[name]}
          </button>
        ))}
        {backend.kind === 'web' && (
          <button type="button" class="logout" data-testid="logout" onClick={async () => { await backend.logout().catch(() => {}); onLogout(); }}>
            Log out
          </button>
        )}
      </nav>
      <main data-testid={`page-${page}`}>
        <h1>{TITLES[page]}</h1>
        {page === 'overview' && <Overview backend={backend} />}
        {page === 'users' && <Users backend={backend} />}
        {page === 'rooms' && <Rooms backend={backend} />}
        {page === 'federation' && <Federation backend={backend} />}
        {page === 'logs' && <Logs backend={backend} />}
        {page === 'settings' && <Settings backend={backend} />}
        {page === 'backup' && <Backup backend={backend} />}
      </main>
    </div>
  );
}
