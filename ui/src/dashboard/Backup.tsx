// Backups: the whole server (database, keys, certificates, media, config) in one file,
// made while it runs; and putting one back.

import { useState } from 'preact/hooks';
import type { Backend } from '../lib/api';
import { ErrorText, Field, describe, when } from '../components/ui';

export function Backup({ backend }: { backend: Backend }) {
  const desktop = backend.kind === 'desktop';
  const [path, setPath] = useState('');
  const [source, setSource] = useState<File | string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const run = async (what: string, action: () => Promise<string>) => {
    setError(null);
    setDone(null);
    setBusy(what);
    try {
      setDone(await action());
    } catch (e) {
      setError(describe(e));
    } finally {
      setBusy(null);
    }
  };
  return (
    <div>
      <div class="card">
        <h3>Make a backup</h3>
        <p class="hint">One file with everything: accounts, rooms and messages, the server's key, certificates, media and settings. The server keeps running.</p>
        {desktop && <Field id="backup_path" label="Save to (empty: your documents folder)" value={path} onInput={setPath} />}
        <button type="button" class="primary" data-testid="backup" disabled={busy !== null} onClick={() => run('Making the backup…', () => backend.backup(path))}>
          {desktop ? 'Save a backup' : 'Download a backup'}
        </button>
      </div>
      <div class="card">
        <h3>Restore a backup</h3>
        <p class="warning">
          The server restarts with the backup's data. What it holds now is not deleted: it is kept in a <code>before-restore-…</code> folder in its data folder.
        </p>
        {desktop ? (
          <Field id="restore_path" label="Backup file" value={typeof source === 'string' ? source : ''} onInput={setSource} />
        ) : (
          <div class="field">
            <label for="restore_file">Backup file</label>
            <input id="restore_file" data-testid="restore_file" type="file" accept=".tar,application/x-tar" onChange={(event) => setSource((event.target as HTMLInputElement).files?.[0] ?? null)} />
          </div>
        )}
        <button
          type="button"
          data-testid="restore"
          disabled={busy !== null || !source}
          onClick={() =>
            source &&
            run('Restoring and restarting…', async () => {
              const manifest = await backend.restore(source);
              return `Restored the backup of ${manifest.server_name} made ${when(manifest.created_ts)}.`;
            })
          }
        >
          Restore
        </button>
      </div>
      {busy && <p class="busy">{busy}</p>}
      {done && <p class="ok" data-testid="backup-done">{done}</p>}
      <ErrorText error={error} />
    </div>
  );
}
