import { HttpBackend } from './http';
import { BackendError } from './backend';

function memoryStorage(): Storage {
  const items = new Map<string, string>();
  return {
    get length() {
      return items.size;
    },
    clear: () => items.clear(),
    getItem: (key) => items.get(key) ?? null,
    key: (index) => [...items.keys()][index] ?? null,
    removeItem: (key) => void items.delete(key),
    setItem: (key, value) => void items.set(key, value),
  };
}

describe('the HTTP backend', () => {
  it('sends the setup token and turns Matrix errors into BackendError', async () => {
    const seen: { url: string; auth: string | null }[] = [];
    const fetcher = (async (url: string, init: RequestInit) => {
      seen.push({ url, auth: new Headers(init.headers).get('authorization') });
      return new Response(JSON.stringify({ errcode: 'M_FORBIDDEN', error: 'Setup is finished.' }), { status: 403 });
    }) as unknown as typeof fetch;
    const store = memoryStorage();
    const backend = new HttpBackend('', fetcher, store);
    const location = { hash: '#setup=secret', pathname: '/_kith/', search: '' } as Location;
    let replaced = '';
    backend.readSetupLink(location, { replaceState: (_s: unknown, _t: string, url: string) => (replaced = url) } as unknown as History);
    expect(replaced).toBe('/_kith/');
    expect(backend.hasSetupToken()).toBe(true);
    const error = await backend.setupAnswers().catch((e) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect(error.code).toBe('M_FORBIDDEN');
    expect(error.message).toBe('Setup is finished.');
    expect(seen).toEqual([{ url: '/_kith/setup/v1/answers', auth: 'Bearer secret' }]);
  });

  it('says when Kith does not answer', async () => {
    const fetcher = (async () => {
      throw new TypeError('connection refused');
    }) as unknown as typeof fetch;
    const error = await new HttpBackend('', fetcher, memoryStorage()).status().catch((e) => e);
    expect(error.code).toBe('NETWORK');
  });

  it('keeps the first admin\'s access token instead of the setup token, and logs in the Matrix way', async () => {
    const seen: { url: string; auth: string | null; body: unknown }[] = [];
    const fetcher = (async (url: string, init: RequestInit) => {
      seen.push({ url, auth: new Headers(init.headers).get('authorization'), body: init.body ? JSON.parse(init.body as string) : null });
      const answer = url.endsWith('/admin')
        ? { user_id: '@alice:family.test', access_token: 'admin-token', device_id: 'D' }
        : url.endsWith('/login')
          ? { access_token: 'login-token' }
          : [];
      return new Response(JSON.stringify(answer), { status: 200 });
    }) as unknown as typeof fetch;
    const store = memoryStorage();
    store.setItem('kith.setup_token', 'secret');
    const backend = new HttpBackend('', fetcher, store);
    await backend.createFirstAdmin('alice', 'pw');
    expect(backend.hasSetupToken()).toBe(false);
    await backend.users();
    await backend.login('alice', 'pw');
    await backend.roomMembers('!r:family.test');
    expect(seen).toEqual([
      { url: '/_kith/setup/v1/admin', auth: 'Bearer secret', body: { username: 'alice', password: 'pw' } },
      { url: '/_kith/admin/v1/users', auth: 'Bearer admin-token', body: null },
      {
        url: '/_matrix/client/v3/login',
        auth: null,
        body: {
          type: 'm.login.password',
          identifier: { type: 'm.id.user', user: 'alice' },
          password: 'pw',
          initial_device_display_name: 'Kith dashboard',
        },
      },
      { url: '/_kith/admin/v1/rooms/!r%3Afamily.test/members', auth: 'Bearer login-token', body: null },
    ]);
  });
});
