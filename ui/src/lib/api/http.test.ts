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
});
