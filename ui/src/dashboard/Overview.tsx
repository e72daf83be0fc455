// What the server is doing: state, addresses, certificate, federation, and the last hour.

import { useEffect, useState } from 'preact/hooks';
import type { Backend } from '../lib/api';
import type { Stats } from '../lib/api/generated/Stats';
import type { Status } from '../lib/api/generated/Status';
import { Chart } from '../components/Chart';
import { ErrorText, ago, describe, duration, mib, plural } from '../components/ui';

const REFRESH_MS = 10000;

export function Overview({ backend }: { backend: Backend }) {
  const [status, setStatus] = useState<Status | null>(null);
  const [stats, setStats] = useState<Stats | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stopped = false;
    const load = async () => {
      try {
        const [s, t] = await Promise.all([backend.status(), backend.stats()]);
        if (stopped) return;
        setStatus(s);
        setStats(t);
        setError(null);
      } catch (e) {
        if (!stopped) setError(describe(e));
      }
    };
    void load();
    const timer = setInterval(load, REFRESH_MS);
    // The desktop app says at once when something happens (a check ran, a restart).
    const unlisten = backend.onServerEvent?.(() => void load());
    return () => {
      stopped = true;
      clearInterval(timer);
      unlisten?.();
    };
  }, []);
  const samples = stats?.samples ?? [];
  const times = samples.map((s) => s.ts / 1000);
  const health = status?.federation_health;
  return (
    <div>
      <ErrorText error={error} />
      {status && (
        <div class="cards">
          <div class="card" data-testid="state">
            <h3>Server</h3>
            <p class="big ok">Running</p>
            <p>
              {status.server_name} · Kith {status.version}
            </p>
            <p>Up for {duration(status.uptime_secs)}</p>
            <p>
              {plural(status.user_count, 'account')} · {plural(status.room_count, 'room')}
            </p>
          </div>
          <div class="card">
            <h3>Addresses</h3>
            <p>Apps: {status.client_addr}</p>
            <p>Other servers: {status.federation_addr ?? 'none (LAN only)'}</p>
            <p>Registration: {status.registration}</p>
          </div>
          <div class="card" data-testid="federation-card">
            <h3>Federation</h3>
            {!status.federation_addr && <p>No federation listener: this server is for the home network only.</p>}
            {status.federation_addr && !health && <p>Not checked yet.</p>}
            {health && (
              <>
                <p class={`big ${health.state}`}>{health.summary}</p>
                <p>Checked {ago(health.checked_at)}</p>
              </>
            )}
            {status.certificate && (
              <p>
                Certificate ({status.certificate.source}) for {status.certificate.names.join(', ')}: {status.certificate.days_left} days left
              </p>
            )}
          </div>
          <div class="card">
            <h3>Memory</h3>
            <p class="big">{mib(status.rss_bytes)}</p>
            <p>Cache of other servers' media: {mib(status.cache_bytes)}</p>
          </div>
        </div>
      )}
      <div class="charts">
        <Chart title="Memory (RSS)" unit="MiB" testid="chart-rss" times={times} values={samples.map((s) => s.rss_bytes / 1048576)} />
        <Chart title="Media cache" unit="MiB" testid="chart-cache" times={times} values={samples.map((s) => s.cache_bytes / 1048576)} />
        <Chart title="Events stored" unit="/s" testid="chart-events" times={times} values={samples.map((s) => s.events_per_sec)} />
      </div>
      {stats && <p class="hint">One point every {stats.interval_secs} s over the last hour.</p>}
    </div>
  );
}
