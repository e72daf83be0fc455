import { fireEvent, render, screen } from '@testing-library/preact';
import { Rooms } from './Rooms';
import { fakeBackend } from '../testing';

describe('the rooms page', () => {
  it("shows a room's members and closes it here after a confirmation", async () => {
    const calls: string[] = [];
    const room = {
      room_id: '!r:family.test', name: 'Family', canonical_alias: null, version: '12', creator: '@alice:family.test',
      local: true, joined_members: 2, local_members: 2, events: 9,
    };
    const backend = fakeBackend(calls, {
      rooms: async () => [room],
      roomMembers: async () => [{ user_id: '@alice:family.test', membership: 'join', displayname: 'Alice', local: true }],
      closeRoom: async (roomId: string) => {
        calls.push(`closeRoom ${roomId}`);
        return { left: ['@alice:family.test', '@bob:family.test'], aliases_removed: ['#family:family.test'] };
      },
    });
    render(<Rooms backend={backend} />);
    fireEvent.click(await screen.findByTestId('room-row'));
    expect((await screen.findByTestId('members')).textContent).toContain('@alice:family.test');
    fireEvent.click(screen.getByTestId('close-room'));
    expect(calls).not.toContain('closeRoom !r:family.test');
    fireEvent.click(screen.getByTestId('close-room-confirm'));
    expect((await screen.findByTestId('room-closed')).textContent).toBe(
      "2 of this server's users left Family; removed #family:family.test.",
    );
    expect(calls).toContain('closeRoom !r:family.test');
  });
});
