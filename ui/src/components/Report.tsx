// The connectivity checker's report: each discovery step green or red, then each problem
// with its fix, the warnings and the notes.

import type { Report } from '../lib/api/generated/Report';

const VERDICT: Record<string, string> = {
  ok: 'other servers can reach it.',
  degraded: 'other servers can reach it, but something needs attention.',
  failing: 'other servers cannot reach it.',
};

export function ReportView({ report }: { report: Report }) {
  return (
    <div class="report" data-testid="report">
      <p class={`verdict ${report.Verdict}`} data-testid="verdict">
        <strong>{report.ServerName}</strong>: {VERDICT[report.Verdict] ?? report.Verdict}
      </p>
      <ol class="steps">
        {report.Steps.map((step) => (
          <li class={`step ${step.Status}`} key={step.Name} data-testid="step">
            <span class="mark">{step.Status === 'ok' ? '✓' : step.Status === 'failed' ? '✗' : step.Status === 'warning' ? '!' : '–'}</span>
            <span class="name">{step.Name}</span>
            <span class="detail">{step.Detail}</span>
          </li>
        ))}
      </ol>
      {report.Problems.length > 0 && (
        <div class="findings problems">
          <h4>What is wrong</h4>
          {report.Problems.map((problem, i) => (
            <div class="finding" key={i} data-testid="problem">
              <p>
                <strong>{problem.Step}:</strong> {problem.Message}
              </p>
              <p class="fix">Fix: {problem.Fix}</p>
            </div>
          ))}
        </div>
      )}
      {report.Warnings.length > 0 && (
        <div class="findings warnings">
          <h4>Worth a look</h4>
          {report.Warnings.map((warning, i) => (
            <div class="finding" key={i}>
              <p>
                <strong>{warning.Step}:</strong> {warning.Message}
              </p>
              <p class="fix">Fix: {warning.Fix}</p>
            </div>
          ))}
        </div>
      )}
      {report.Notes.length > 0 && (
        <ul class="notes">
          {report.Notes.map((note, i) => (
            <li key={i}>{note}</li>
          ))}
        </ul>
      )}
    </div>
  );
}
