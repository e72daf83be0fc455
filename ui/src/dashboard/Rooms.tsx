// Rooms the server knows, and their members.

import { useEffect, useState } from 'preact/hooks';
import type { Backend } from '../lib/api';
import type { RoomMember } from '../lib/api/generated/RoomMember';
import type { RoomSummary } from '../lib/api/generated/RoomSummary';
import { ErrorText, describe } from '../components/ui';

export function Rooms({ backend }: { backend: Backend }) {
  const [rooms, setRooms] = useState<RoomSummary[] | null>(null);
  const [open, setOpen] = useState<{ room: RoomSummary; members: RoomMember[] } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<'close' | 'delete' | null>(null);
  const [closed, setClosed] = useState<string | null>(null);
  const load = () => backend.rooms().then(setRooms, (e) => setError(describe(e)));
  useEffect(() => {
    void load();
  }, []);
  const act = async (room: RoomSummary, action: 'close' | 'delete') => {
    setConfirming(null);
    const title = room.name ?? room.room_id;
    try {
      const result = action === 'delete' ? await backend.deleteRoom(room.room_id) : await backend.closeRoom(room.room_id);
      const left = `${result.left.length} of this server's users left ${title}`;
      const aliases = result.aliases_removed.length ? `; removed ${result.aliases_removed.join(', ')}` : '';
      if (action === 'delete') {
        setClosed(`${left}${aliases}; deleted it and its ${result.events_removed} events from this server.`);
        setOpen(null);
      } else {
        setClosed(`${left}${aliases}.`);
        await show(room);
      }
      await load();
    } catch (e) {
      setError(describe(e));
    }
  };
  async function show(room: RoomSummary) {
    try {
      setOpen({ room, members: await backend.roomMembers(room.room_id) });
    } catch (e) {
      setError(describe(e));
    }
  }
  return (
    <div>
      <ErrorText error={error} />
      {rooms && rooms.length === 0 && <p data-testid="no-rooms">No rooms yet: rooms appear here once someone creates or joins one.</p>}
      {rooms && rooms.length > 0 && (
        <table class="list clickable" data-testid="rooms">
          <thead>
            <tr>
              <th>Room</th>
              <th>Members (here)</th>
              <th>Where</th>
              <th>Version</th>
              <th>Events</th>
            </tr>
          </thead>
          <tbody>
            {rooms.map((room) => (
              <tr key={room.room_id} onClick={() => show(room)} data-testid="room-row">
                <td>
                  <strong>{room.name ?? room.canonical_alias ?? room.room_id}</strong>
                  <div class="hint">{room.room_id}</div>
                </td>
                <td>
                  {room.joined_members} ({room.local_members})
                </td>
                <td>{room.local ? 'made here' : 'from another server'}</td>
                <td>{room.version}</td>
                <td>{room.events}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {open && (
        <div class="card" data-testid="members">
          <h3>Members of {open.room.name ?? open.room.room_id}</h3>
          <table class="list">
            <thead>
              <tr>
                <th>User</th>
                <th>Name</th>
                <th>Membership</th>
                <th>Account</th>
              </tr>
            </thead>
            <tbody>
              {open.members.map((member) => (
                <tr key={member.user_id}>
                  <td>{member.user_id}</td>
                  <td>{member.displayname ?? ''}</td>
                  <td>{member.membership}</td>
                  <td>{member.local ? 'on this server' : 'on another server'}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <p class="hint">
            Closing the room here makes every user of this server leave it and removes its aliases and directory entry here;
            its history stays stored. Deleting it does the same, then removes the room and its history from this server.
            People on other servers keep it either way.
          </p>
          <div class="row">
            {confirming === 'close' ? (
              <button type="button" class="danger" data-testid="close-room-confirm" onClick={() => act(open.room, 'close')}>
                Really close it here?
              </button>
            ) : (
              <button type="button" data-testid="close-room" onClick={() => setConfirming('close')}>
                Close this room on this server
              </button>
            )}
            {confirming === 'delete' ? (
              <button type="button" class="danger" data-testid="delete-room-confirm" onClick={() => act(open.room, 'delete')}>
                Really delete it and its history?
              </button>
            ) : (
              <button type="button" data-testid="delete-room" onClick={() => setConfirming('delete')}>
                Delete this room from this server
              </button>
            )}
          </div>
        </div>
      )}
      {closed && <p class="ok" data-testid="room-closed">{closed}</p>}
    </div>
  );
}
