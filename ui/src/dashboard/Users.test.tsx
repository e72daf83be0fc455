import { fireEvent, render, screen, waitFor } from '@testing-library/preact';
import { Users } from './Users';
import { fakeBackend } from '../testing';
import { BackendError } from '../lib/api';

describe('the users page', () => {
  it('lists the accounts and shows why Kith refused a new one', async () => {
    const calls: string[] = [];
    const backend = fakeBackend(calls, {
      users: async () => [
        { user_id: '@alice:family.test', displayname: 'Alice', admin: true, deactivated: false, created_ts: 0, devices: 1 },
      ],
      createUser: async () => {
        throw new BackendError('M_WEAK_PASSWORD', 'This password is very weak.');
      },
    });
    render(<Users backend={backend} />);
    expect((await screen.findByTestId('user-row')).textContent).toContain('@alice:family.test');
    fireEvent.input(screen.getByTestId('new_username'), { target: { value: 'bob' } });
    fireEvent.input(screen.getByTestId('new_password'), { target: { value: 'bob' } });
    fireEvent.click(screen.getByTestId('create-user-submit'));
    expect((await screen.findByTestId('create-user-error')).textContent).toBe('This password is very weak.');
  });

  it('creates an account with what was typed and lists it', async () => {
    const calls: string[] = [];
    let list = [{ user_id: '@alice:family.test', displayname: null, admin: true, deactivated: false, created_ts: 0, devices: 1 }];
    const backend = fakeBackend(calls, {
      users: async () => list,
      createUser: async (username: string, password: string, admin: boolean) => {
        calls.push(`createUser ${JSON.stringify([username, password, admin])}`);
        const user = { user_id: `@${username}:family.test`, displayname: null, admin, deactivated: false, created_ts: 0, devices: 0 };
        list = [...list, user];
        return user;
      },
    });
    render(<Users backend={backend} />);
    await screen.findByTestId('user-row');
    fireEvent.input(screen.getByTestId('new_username'), { target: { value: 'bob' } });
    fireEvent.input(screen.getByTestId('new_password'), { target: { value: 'another long passphrase 42' } });
    fireEvent.click(screen.getByTestId('create-user-submit'));
    expect(await screen.findByText('@bob:family.test')).toBeTruthy();
    expect(calls).toContain('createUser ["bob","another long passphrase 42",false]');
    expect(screen.queryByTestId('create-user-error')).toBeNull();
  });

  it('deactivates only after the confirmation', async () => {
    const calls: string[] = [];
    const backend = fakeBackend(calls, {
      users: async () => [{ user_id: '@bob:family.test', displayname: null, admin: false, deactivated: false, created_ts: 0, devices: 0 }],
    });
    render(<Users backend={backend} />);
    await screen.findByTestId('user-row');
    fireEvent.click(screen.getByTestId('deactivate'));
    expect(calls.some((c) => c.startsWith('deactivateUser'))).toBe(false);
    fireEvent.click(screen.getByTestId('deactivate-confirm'));
    await waitFor(() => expect(calls).toContain('deactivateUser ["@bob:family.test"]'));
  });
});
