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
        return { left: ['@alice:family.test', '@bob:family.test'], aliases_removed: ['#family:family.test'], events_removed: 0 };
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

  it('deletes a room and its history after a confirmation, and the list no longer has it', async () => {
    const calls: string[] = [];
    const room = {
      room_id: '!r:family.test', name: 'Family', canonical_alias: null, version: '12', creator: '@alice:family.test',
      local: true, joined_members: 1, local_members: 1, events: 9,
    };
    let rooms = [room];
    const backend = fakeBackend(calls, {
      rooms: async () => rooms,
      roomMembers: async () => [{ user_id: '@alice:family.test', membership: 'join', displayname: 'Alice', local: true }],
      deleteRoom: async (roomId: string) => {
        calls.push(`deleteRoom ${roomId}`);
        rooms = [];
        return { left: ['@alice:family.test'], aliases_removed: [], events_removed: 10 };
      },
    });
    render(<Rooms backend={backend} />);
    fireEvent.click(await screen.findByTestId('room-row'));
    await screen.findByTestId('members');
    fireEvent.click(screen.getByTestId('delete-room'));
    expect(calls).not.toContain('deleteRoom !r:family.test');
    fireEvent.click(screen.getByTestId('delete-room-confirm'));
    expect((await screen.findByTestId('room-closed')).textContent).toBe(
      "1 of this server's users left Family; deleted it and its 10 events from this server.",
    );
    expect(await screen.findByTestId('no-rooms')).toBeTruthy();
    expect(screen.queryByTestId('members')).toBeNull();
  });
});
