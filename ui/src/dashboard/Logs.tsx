// The server's log, live, with a level filter.

import { useEffect, useRef, useState } from 'preact/hooks';
import type { Backend } from '../lib/api';
import type { LogLine } from '../lib/api/generated/LogLine';
import { ErrorText, describe } from '../components/ui';

const LEVELS = ['error', 'warn', 'info', 'debug'];
const KEPT = 1000;

export function Logs({ backend }: { backend: Backend }) {
  const [level, setLevel] = useState('info');
  const [lines, setLines] = useState<LogLine[]>([]);
  const [error, setError] = useState<string | null>(null);
  const last = useRef(0);
  useEffect(() => {
    let stopped = false;
    last.current = 0;
    setLines([]);
    const poll = async () => {
      try {
        const fresh = await backend.logs(last.current, level);
        if (stopped || fresh.length === 0) return;
        last.current = fresh[fresh.length - 1].seq;
        setLines((old) => [...old, ...fresh].slice(-KEPT));
        setError(null);
      } catch (e) {
        if (!stopped) setError(describe(e));
      }
    };
    void poll();
    const timer = setInterval(poll, 2000);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [level]);
  return (
    <div>
      <div class="row">
        <label for="log_level">Show</label>
        <select id="log_level" data-testid="log-level" value={level} onChange={(event) => setLevel((event.target as HTMLSelectElement).value)}>
          {LEVELS.map((l) => (
            <option value={l} key={l}>
              {l} and worse
            </option>
          ))}
        </select>
      </div>
      <ErrorText error={error} />
      <pre class="log" data-testid="log">
        {lines.map((line) => (
          <div class={`line ${line.level}`} key={line.seq}>
            {new Date(line.ts).toLocaleTimeString()} {line.level.toUpperCase().padEnd(5)} {line.target}: {line.message}
          </div>
        ))}
      </pre>
    </div>
  );
}
