// The config file, edited as text; Kith checks it and restarts with it.

import { useEffect, useState } from 'preact/hooks';
import type { Backend } from '../lib/api';
import type { AnswerProblem } from '../lib/api/generated/AnswerProblem';
import { ErrorText, describe } from '../components/ui';

export function Settings({ backend }: { backend: Backend }) {
  const [path, setPath] = useState('');
  const [text, setText] = useState<string | null>(null);
  const [problems, setProblems] = useState<AnswerProblem[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  useEffect(() => {
    backend.configText().then(
      (config) => {
        setPath(config.path);
        setText(config.text);
      },
      (e) => setError(describe(e)),
    );
  }, []);
  if (text === null) return <ErrorText error={error} />;
  return (
    <div>
      <p class="hint">{path}</p>
      <textarea class="config" data-testid="config" spellcheck={false} value={text} onInput={(event) => { setText((event.target as HTMLTextAreaElement).value); setProblems(null); }} />
      <div class="row">
        <button
          type="button"
          data-testid="check-config"
          onClick={async () => {
            setError(null);
            try {
              setProblems(await backend.checkConfig(text));
            } catch (e) {
              setError(describe(e));
            }
          }}
        >
          Check
        </button>
        <button
          type="button"
          class="primary"
          data-testid="save-config"
          disabled={busy !== null}
          onClick={async () => {
            setError(null);
            setBusy('Saving and restarting…');
            try {
              await backend.saveConfig(text);
              setProblems([]);
              setBusy('Saved; the server restarted with it.');
            } catch (e) {
              setError(describe(e));
              setBusy(null);
            }
          }}
        >
          Save and restart
        </button>
      </div>
      {busy && <p class="busy">{busy}</p>}
      {problems && problems.length === 0 && <p class="ok">No problems.</p>}
      {problems &&
        problems.map((p, i) => (
          <p class="problem" key={i} data-testid="config-problem">
            {p.field ? `${p.field}: ` : ''}
            {p.message}
          </p>
        ))}
      <ErrorText error={error} />
    </div>
  );
}
