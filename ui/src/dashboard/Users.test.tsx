import { fireEvent, render, screen } from '@testing-library/preact';
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
});
