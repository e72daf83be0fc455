// Accounts and invite (registration) tokens.

import { useEffect, useState } from 'preact/hooks';
import type { Backend } from '../lib/api';
import type { RegistrationToken } from '../lib/api/generated/RegistrationToken';
import type { UserSummary } from '../lib/api/generated/UserSummary';
import { CopyButton, ErrorText, Field, describe, when } from '../components/ui';

export function Users({ backend }: { backend: Backend }) {
  const [users, setUsers] = useState<UserSummary[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [form, setForm] = useState({ username: '', password: '', admin: false });
  const [formError, setFormError] = useState<string | null>(null);
  const [resetting, setResetting] = useState<{ userId: string; password: string } | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const load = () =>
    backend.users().then(
      (list) => {
        setUsers(list);
        setError(null);
      },
      (e) => setError(describe(e)),
    );
  useEffect(() => {
    void load();
  }, []);
  const act = async (action: () => Promise<unknown>) => {
    setError(null);
    try {
      await action();
    } catch (e) {
      setError(describe(e));
    }
    await load();
  };
  return (
    <div>
      <ErrorText error={error} testid="users-error" />
      <table class="list" data-testid="users">
        <thead>
          <tr>
            <th>User</th>
            <th>Name</th>
            <th>Devices</th>
            <th>Created</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {users.map((user) => (
            <tr key={user.user_id} class={user.deactivated ? 'muted' : ''} data-testid="user-row">
              <td>
                {user.user_id}
                {user.admin && <span class="tag">admin</span>}
                {user.deactivated && <span class="tag">deactivated</span>}
              </td>
              <td>{user.displayname ?? ''}</td>
              <td>{user.devices}</td>
              <td>{when(user.created_ts)}</td>
              <td class="actions">
                {!user.deactivated && (
                  <>
                    <button type="button" class="small" data-testid="reset-password" onClick={() => setResetting({ userId: user.user_id, password: '' })}>
                      Reset password
                    </button>
                    <button type="button" class="small" data-testid="toggle-admin" onClick={() => act(() => backend.setAdmin(user.user_id, !user.admin))}>
                      {user.admin ? 'Remove admin' : 'Make admin'}
                    </button>
                    {confirming === user.user_id ? (
                      <button type="button" class="small danger" data-testid="deactivate-confirm" onClick={() => { setConfirming(null); void act(() => backend.deactivateUser(user.user_id)); }}>
                        Really deactivate?
                      </button>
                    ) : (
                      <button type="button" class="small" data-testid="deactivate" onClick={() => setConfirming(user.user_id)}>
                        Deactivate
                      </button>
                    )}
                  </>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {resetting && (
        <form
          class="card inline"
          onSubmit={(event) => {
            event.preventDefault();
            const { userId, password } = resetting;
            setResetting(null);
            void act(() => backend.resetPassword(userId, password));
          }}
        >
          <Field id="reset_password" label={`New password for ${resetting.userId}`} type="password" value={resetting.password} onInput={(password) => setResetting({ ...resetting, password })} hint="Every device of this account is logged out." />
          <button type="submit" class="primary" data-testid="reset-password-submit">Set password</button>
          <button type="button" onClick={() => setResetting(null)}>Cancel</button>
        </form>
      )}
      <form
        class="card"
        data-testid="create-user"
        onSubmit={async (event) => {
          event.preventDefault();
          setFormError(null);
          try {
            await backend.createUser(form.username, form.password, form.admin);
            setForm({ username: '', password: '', admin: false });
            await load();
          } catch (e) {
            setFormError(describe(e));
          }
        }}
      >
        <h3>Create an account</h3>
        <Field id="new_username" label="User name" value={form.username} onInput={(username) => setForm({ ...form, username })} />
        <Field id="new_password" label="Password" type="password" value={form.password} onInput={(password) => setForm({ ...form, password })} autocomplete="new-password" />
        <label class="check">
          <input type="checkbox" data-testid="new_admin" checked={form.admin} onChange={(event) => setForm({ ...form, admin: (event.target as HTMLInputElement).checked })} /> Server admin
        </label>
        <ErrorText error={formError} testid="create-user-error" />
        <button type="submit" class="primary" data-testid="create-user-submit">
          Create
        </button>
      </form>
      <Tokens backend={backend} />
    </div>
  );
}

function Tokens({ backend }: { backend: Backend }) {
  const [tokens, setTokens] = useState<RegistrationToken[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [uses, setUses] = useState('1');
  const [expiry, setExpiry] = useState('');
  const load = () => backend.tokens().then(setTokens, (e) => setError(describe(e)));
  useEffect(() => {
    void load();
  }, []);
  return (
    <div class="card" data-testid="tokens">
      <h3>Invite tokens</h3>
      <p class="hint">A person registers with a token when registration is by token.</p>
      <table class="list">
        <thead>
          <tr>
            <th>Token</th>
            <th>Used</th>
            <th>Expires</th>
            <th>State</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {tokens.map((token) => (
            <tr key={token.token} data-testid="token-row">
              <td>
                <code>{token.token}</code> <CopyButton text={token.token} />
              </td>
              <td>
                {token.completed} of {token.uses_allowed ?? 'any'}
              </td>
              <td>{token.expiry_ts ? when(token.expiry_ts) : 'never'}</td>
              <td>{token.valid ? 'valid' : 'spent or expired'}</td>
              <td>
                <button type="button" class="small" data-testid="revoke-token" onClick={async () => { try { await backend.revokeToken(token.token); } catch (e) { setError(describe(e)); } await load(); }}>
                  Revoke
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        class="row"
        onSubmit={async (event) => {
          event.preventDefault();
          setError(null);
          try {
            const usesAllowed = uses.trim() === '' ? null : Number.parseInt(uses, 10);
            const expiryTs = expiry ? new Date(expiry).getTime() : null;
            await backend.createToken(Number.isNaN(usesAllowed) ? null : usesAllowed, expiryTs);
            await load();
          } catch (e) {
            setError(describe(e));
          }
        }}
      >
        <Field id="token_uses" label="Accounts (empty: any number)" value={uses} onInput={setUses} />
        <div class="field">
          <label for="token_expiry">Expires (optional)</label>
          <input id="token_expiry" type="date" value={expiry} onInput={(event) => setExpiry((event.target as HTMLInputElement).value)} />
        </div>
        <button type="submit" class="primary" data-testid="create-token">
          Create token
        </button>
      </form>
      <ErrorText error={error} testid="tokens-error" />
    </div>
  );
}
