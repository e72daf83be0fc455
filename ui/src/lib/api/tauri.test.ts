import { TauriBackend } from './tauri';
import { BackendError } from './backend';

describe('the desktop backend', () => {
  it("calls Kith's commands by name with one object of arguments", async () => {
    const calls: [string, unknown][] = [];
    const backend = new TauriBackend({
      core: {
        invoke: async (command: string, args?: Record<string, unknown>) => {
          calls.push([command, args]);
          return [];
        },
      },
    });
    await backend.createToken(5, null);
    await backend.roomMembers('!r:family.test');
    await backend.setupState();
    expect(calls).toEqual([
      ['create_token', { usesAllowed: 5, expiryTs: null }],
      ['room_members', { roomId: '!r:family.test' }],
      ['setup_state', undefined],
    ]);
  });

  it('turns a rejected command into BackendError', async () => {
    const backend = new TauriBackend({
      core: {
        invoke: async () => {
          throw { code: 'M_USER_IN_USE', message: 'The user name bob is taken.' };
        },
      },
    });
    const error = await backend.createUser('bob', 'pw', false).catch((e) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect(error.code).toBe('M_USER_IN_USE');
    expect(error.message).toBe('The user name bob is taken.');
  });
});
