// The first screen decides: the wizard (first run), the admin login, or the dashboard.

import { useEffect, useState } from 'preact/hooks';
import type { Backend } from './lib/api';
import { BackendError } from './lib/api';
import { Wizard } from './wizard/Wizard';
import { Dashboard } from './dashboard/Dashboard';
import { ErrorText, Field, describe } from './components/ui';

type Screen = 'loading' | 'needs-link' | 'wizard' | 'login' | 'dashboard' | 'down';

export function App({ backend }: { backend: Backend }) {
  const [screen, setScreen] = useState<Screen>('loading');
  const [error, setError] = useState<string | null>(null);
  const decide = async () => {
    try {
      const state = await backend.setupState();
      if (state.needs_setup) setScreen(backend.hasSetupToken() ? 'wizard' : 'needs-link');
      else setScreen(backend.loggedIn() ? 'dashboard' : 'login');
    } catch (e) {
      setError(describe(e));
      setScreen('down');
    }
  };
  useEffect(() => {
    void decide();
  }, []);
  switch (screen) {
    case 'loading':
      return <p class="center">Loading…</p>;
    case 'down':
      return (
        <main class="center card">
          <h1>Kith</h1>
          <ErrorText error={error} />
          <button type="button" onClick={decide}>Try again</button>
        </main>
      );
    case 'needs-link':
      return (
        <main class="center card" data-testid="needs-link">
          <h1>Kith is not set up yet</h1>
          <p>Open the one-time setup link that Kith printed when it started: it ends with <code>#setup=…</code>.</p>
        </main>
      );
    case 'wizard':
      return <Wizard backend={backend} onFinished={() => setScreen('dashboard')} />;
    case 'login':
      return <Login backend={backend} onLoggedIn={() => setScreen('dashboard')} />;
    case 'dashboard':
      return <Dashboard backend={backend} onLogout={() => setScreen('login')} />;
  }
}

function Login({ backend, onLoggedIn }: { backend: Backend; onLoggedIn: () => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  return (
    <main class="center">
      <form
        class="card login"
        data-testid="login"
        onSubmit={async (event) => {
          event.preventDefault();
          setError(null);
          try {
            await backend.login(username, password);
            await backend.status();
            onLoggedIn();
          } catch (e) {
            if (e instanceof BackendError && e.code === 'M_FORBIDDEN') {
              await backend.logout().catch(() => {});
              setError('This account is not a server admin.');
            } else {
              setError(describe(e));
            }
          }
        }}
      >
        <h1>Kith dashboard</h1>
        <p>Log in with a server admin's account.</p>
        <Field id="login_username" label="User name" value={username} onInput={setUsername} autocomplete="username" />
        <Field id="login_password" label="Password" type="password" value={password} onInput={setPassword} autocomplete="current-password" />
        <ErrorText error={error} testid="login-error" />
        <button type="submit" class="primary" data-testid="login-submit">
          Log in
        </button>
      </form>
    </main>
  );
}
