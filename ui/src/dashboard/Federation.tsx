// Other servers this one sends to, and the connectivity checker for any server name.

import { useEffect, useState } from 'preact/hooks';
import type { Backend } from '../lib/api';
import type { Destination } from '../lib/api/generated/Destination';
import type { Report } from '../lib/api/generated/Report';
import { ReportView } from '../components/Report';
import { ErrorText, Field, describe, when } from '../components/ui';

export function Federation({ backend }: { backend: Backend }) {
  const [destinations, setDestinations] = useState<Destination[] | null>(null);
  const [name, setName] = useState('');
  const [report, setReport] = useState<Report | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [checking, setChecking] = useState(false);
  useEffect(() => {
    backend.destinations().then(setDestinations, (e) => setError(describe(e)));
    backend.status().then((s) => setName((current) => current || s.server_name), () => {});
  }, []);
  return (
    <div>
      <ErrorText error={error} />
      <div class="card">
        <h3>Other servers</h3>
        {destinations && destinations.length === 0 && <p data-testid="no-destinations">This server has not sent anything to another server yet.</p>}
        {destinations && destinations.length > 0 && (
          <table class="list" data-testid="destinations">
            <thead>
              <tr>
                <th>Server</th>
                <th>Last delivered</th>
                <th>Failures</th>
                <th>Next try</th>
                <th>Waiting</th>
              </tr>
            </thead>
            <tbody>
              {destinations.map((d) => (
                <tr key={d.server_name} title={d.last_error ?? ''}>
                  <td>{d.server_name}</td>
                  <td>{when(d.last_success_ts)}</td>
                  <td>{d.failures}</td>
                  <td>{d.retry_at_ts > Date.now() ? when(d.retry_at_ts) : 'now'}</td>
                  <td>{d.queued}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      <form
        class="card"
        onSubmit={async (event) => {
          event.preventDefault();
          setChecking(true);
          setError(null);
          try {
            setReport(await backend.checkFederation(name.trim()));
          } catch (e) {
            setError(describe(e));
          } finally {
            setChecking(false);
          }
        }}
      >
        <h3>Check a server</h3>
        <p class="hint">Runs the discovery steps other servers take to reach a server name, and says what is wrong and how to fix it.</p>
        <Field id="check_name" label="Server name" value={name} onInput={setName} />
        <button type="submit" class="primary" data-testid="check" disabled={checking}>
          {checking ? 'Checking…' : 'Check'}
        </button>
      </form>
      {report && <ReportView report={report} />}
    </div>
  );
}
