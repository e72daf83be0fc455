import { fireEvent, render, screen, waitFor } from '@testing-library/preact';
import { Wizard } from './Wizard';
import { answers, fakeBackend } from '../testing';
import type { SetupAnswers } from '../lib/api/generated/SetupAnswers';

const type = (testid: string, value: string) => fireEvent.input(screen.getByTestId(testid), { target: { value } });
const next = () => fireEvent.click(screen.getByTestId('next'));

describe('the wizard', () => {
  it('shows a problem Kith reports next to its field and stays on the step', async () => {
    const calls: string[] = [];
    const backend = fakeBackend(calls, {
      checkSetup: async () => ({
        problems: [{ field: 'server_name', message: '`x y` is not a valid server name' }],
        warnings: [],
        delegation: null,
      }),
    });
    render(<Wizard backend={backend} onFinished={() => {}} />);
    await screen.findByTestId('step-welcome');
    next();
    await screen.findByTestId('step-name');
    type('server_name', 'x y');
    next();
    expect((await screen.findByTestId('server_name-problem')).textContent).toBe('`x y` is not a valid server name');
    expect(screen.getByTestId('step-name')).toBeTruthy();
  });

  it('keeps what was entered across Back and Next', async () => {
    render(<Wizard backend={fakeBackend([])} onFinished={() => {}} />);
    await screen.findByTestId('step-welcome');
    next();
    await screen.findByTestId('step-name');
    type('server_name', 'family.test');
    next();
    await screen.findByTestId('step-network');
    type('client_listen', '0.0.0.0:8008');
    fireEvent.click(screen.getByTestId('back'));
    await screen.findByTestId('step-name');
    expect((screen.getByTestId('server_name') as HTMLInputElement).value).toBe('family.test');
    next();
    await screen.findByTestId('step-network');
    expect((screen.getByTestId('client_listen') as HTMLInputElement).value).toBe('0.0.0.0:8008');
  });

  it('shows the records to publish and a failing check with its fix', async () => {
    const domain: SetupAnswers = { ...answers(), kind: 'domain', server_name: 'example.org', tls_mode: 'acme' };
    const backend = fakeBackend([], {
      setupAnswers: async () => domain,
      checkSetup: async () => ({
        problems: [],
        warnings: [],
        delegation: {
          summary: 'Point example.org at this machine.',
          records: [{ name: 'example.org.', kind: 'A', value: '203.0.113.7', zone_line: 'example.org. 3600 IN A 203.0.113.7', why: 'Other servers connect here.' }],
          well_known_server: null,
          well_known_client: null,
          certificate_name: 'example.org',
          alternative: null,
          zone_file: 'example.org. 3600 IN A 203.0.113.7',
        },
      }),
      federationCheck: async () => ({
        Error: null, WellKnownResult: { 'm.server': '', result: '', CacheExpiresAt: 0, Addresses: {} },
        DNSResult: { SRVSkipped: false, SRVCName: '', SRVRecords: [], SRVError: null, Hosts: {}, Addrs: [], SRVName: '' },
        ConnectionReports: {}, ConnectionErrors: {}, Version: { name: '', version: '', error: '' }, FederationOK: false,
        ServerName: 'example.org', CheckedAt: 0, Verdict: 'failing',
        Steps: [{ Name: 'Addresses', Status: 'failed', Detail: 'example.org has no address' }],
        Problems: [{ Step: 'Addresses', Message: 'example.org has no A or AAAA record.', Fix: 'Create an A record for example.org.' }],
        Warnings: [], Notes: [], External: null,
      }) as never,
    });
    render(<Wizard backend={backend} onFinished={() => {}} />);
    await screen.findByTestId('step-welcome');
    next();
    await screen.findByTestId('step-name');
    next();
    await screen.findByTestId('step-network');
    next();
    await screen.findByTestId('step-dns');
    expect((await screen.findByTestId('records')).textContent).toContain('203.0.113.7');
    fireEvent.click(screen.getByTestId('check-now'));
    expect((await screen.findByTestId('problem')).textContent).toContain('Fix: Create an A record for example.org.');
    expect(screen.getByTestId('step').className).toContain('failed');
  });

  it('shows the strength Kith gives, and Finish applies, makes the admin, then the first token', async () => {
    const calls: string[] = [];
    const backend = fakeBackend(calls, {
      setupAnswers: async () => ({ ...answers(), server_name: 'family.test', registration: 'token' }),
    });
    render(<Wizard backend={backend} onFinished={() => {}} />);
    await screen.findByTestId('step-welcome');
    next();
    await screen.findByTestId('step-name');
    next();
    await screen.findByTestId('step-network');
    next();
    await screen.findByTestId('step-admin');
    type('admin_username', 'alice');
    type('admin_password', 'correct horse battery staple');
    type('admin_confirm', 'correct horse battery staple');
    expect((await screen.findByTestId('strength-label')).textContent).toBe('strong');
    next();
    await screen.findByTestId('step-join');
    calls.length = 0;
    next();
    await screen.findByTestId('done');
    const order = calls.map((c) => c.split(' ')[0]).filter((c) => ['applySetup', 'createFirstAdmin', 'createToken'].includes(c));
    expect(order).toEqual(['applySetup', 'createFirstAdmin', 'createToken']);
    await waitFor(() => expect(screen.getByTestId('done-token').textContent).toBe('abc'));
  });

  it("shows Kith's warning that the name can never change while it is typed", async () => {
    const backend = fakeBackend([], {
      checkSetup: async (a: SetupAnswers) => ({
        problems: [],
        warnings: [{ field: 'server_name', message: `The server name \`${a.server_name}\` can never change once accounts exist: user IDs will be @name:${a.server_name}.` }],
        delegation: null,
      }),
    });
    render(<Wizard backend={backend} onFinished={() => {}} />);
    await screen.findByTestId('step-welcome');
    next();
    await screen.findByTestId('step-name');
    type('server_name', 'family.test');
    await waitFor(() => expect(screen.getByTestId('warning').textContent).toContain('`family.test` can never change'));
  });

  it('numbers all seven steps and skips DNS for a LAN-only server, both ways', async () => {
    render(<Wizard backend={fakeBackend([])} onFinished={() => {}} />);
    await screen.findByTestId('step-welcome');
    const items = screen.getByTestId('stepper').querySelectorAll('li');
    expect([...items].map((li) => li.textContent)).toEqual([
      '1 Welcome', '2 Server name', '3 Network', '4 DNS', '5 Admin', '6 Who may join', '7 Done',
    ]);
    expect(items[3].className).toBe('skipped');
    next();
    await screen.findByTestId('step-name');
    next();
    await screen.findByTestId('step-network');
    next();
    await screen.findByTestId('step-admin');
    fireEvent.click(screen.getByTestId('back'));
    await screen.findByTestId('step-network');
  });

  it('shows a problem with the whole config at the top, and it stops Finish', async () => {
    const calls: string[] = [];
    const backend = fakeBackend(calls, {
      checkSetup: async () => ({ problems: [{ field: '', message: 'The data folder is not writable.' }], warnings: [], delegation: null }),
    });
    render(<Wizard backend={backend} onFinished={() => {}} />);
    await screen.findByTestId('step-welcome');
    next();
    await screen.findByTestId('step-name');
    next();
    // Not this step's: shown, but the user may go on.
    await screen.findByTestId('step-network');
    next();
    await screen.findByTestId('step-admin');
    type('admin_username', 'alice');
    type('admin_password', 'correct horse battery staple');
    type('admin_confirm', 'correct horse battery staple');
    next();
    await screen.findByTestId('step-join');
    next();
    expect((await screen.findByTestId('general-problem')).textContent).toBe('The data folder is not writable.');
    expect(screen.getByTestId('step-join')).toBeTruthy();
    expect(calls.some((c) => c.startsWith('applySetup'))).toBe(false);
  });

  it('blocks Next at the admin step on the problems checkAdmin gives', async () => {
    const backend = fakeBackend([], {
      checkAdmin: async () => ({
        problems: [{ field: 'password', message: 'This password is too weak: add another word or two.' }],
        strength: { score: 0, label: 'very weak', acceptable: false, suggestions: ['Add another word or two.'] },
        user_id: '@alice:localhost',
      }),
    });
    render(<Wizard backend={backend} onFinished={() => {}} />);
    await screen.findByTestId('step-welcome');
    next();
    await screen.findByTestId('step-name');
    next();
    await screen.findByTestId('step-network');
    next();
    await screen.findByTestId('step-admin');
    type('admin_username', 'alice');
    type('admin_password', 'alice1');
    type('admin_confirm', 'alice1');
    expect((await screen.findByTestId('strength')).textContent).toContain('Add another word or two.');
    expect(screen.getByTestId('user-id').textContent).toBe('Your user ID will be @alice:localhost.');
    next();
    expect((await screen.findByTestId('admin_password-problem')).textContent).toBe('This password is too weak: add another word or two.');
    expect(screen.getByTestId('step-admin')).toBeTruthy();
  });

  it("fills the public address from the router's answer, and the A record waits for it", async () => {
    const domain: SetupAnswers = { ...answers(), kind: 'domain', server_name: 'example.org', tls_mode: 'acme' };
    const checked: SetupAnswers[] = [];
    const backend = fakeBackend([], {
      setupAnswers: async () => domain,
      portMapping: async () => ({ gateway: '192.168.1.1:5000', external_ip: '203.0.113.7', mapped: [], failed: [] }),
      checkSetup: async (a: SetupAnswers) => {
        checked.push(a);
        const value = a.public_ipv4 || '<your public IPv4 address>';
        return {
          problems: [],
          warnings: [],
          delegation: {
            summary: 'Point example.org at this machine.',
            records: [{ name: 'example.org.', kind: 'A', value, zone_line: `example.org. 3600 IN A ${value}`, why: 'Other servers connect here.' }],
            well_known_server: null,
            well_known_client: null,
            certificate_name: 'example.org',
            alternative: null,
            zone_file: `example.org. 3600 IN A ${value}`,
          },
        };
      },
    });
    render(<Wizard backend={backend} onFinished={() => {}} />);
    await screen.findByTestId('step-welcome');
    next();
    await screen.findByTestId('step-name');
    next();
    await screen.findByTestId('step-network');
    next();
    await screen.findByTestId('step-dns');
    expect((await screen.findByTestId('records')).textContent).toContain('Fill in on the Network step');
    fireEvent.click(screen.getByTestId('back'));
    await screen.findByTestId('step-network');
    fireEvent.click(screen.getByTestId('map-ports'));
    await waitFor(() => expect((screen.getByTestId('public_ipv4') as HTMLInputElement).value).toBe('203.0.113.7'));
    next();
    await screen.findByTestId('step-dns');
    await waitFor(() => expect(screen.getByTestId('records').textContent).toContain('203.0.113.7'));
    expect(screen.getByTestId('records').textContent).not.toContain('Fill in');
    expect(checked.at(-1)?.public_ipv4).toBe('203.0.113.7');
  });
});
