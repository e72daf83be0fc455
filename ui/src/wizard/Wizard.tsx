// The first-run wizard: welcome, server name, network and certificate, DNS, the admin
// account, who may join, done. Every answer is checked by Kith itself (checkSetup,
// checkAdmin); Back and Next keep everything entered.

import { useEffect, useRef, useState } from 'preact/hooks';
import type { Backend } from '../lib/api';
import type { AdminCheck } from '../lib/api/generated/AdminCheck';
import type { AnswerProblem } from '../lib/api/generated/AnswerProblem';
import type { RegistrationToken } from '../lib/api/generated/RegistrationToken';
import type { Report } from '../lib/api/generated/Report';
import type { SetupAnswers } from '../lib/api/generated/SetupAnswers';
import type { SetupCheck } from '../lib/api/generated/SetupCheck';
import type { Status } from '../lib/api/generated/Status';
import { Choices, CopyButton, ErrorText, Field, describe } from '../components/ui';
import { ReportView } from '../components/Report';
import { Qr } from '../components/Qr';

type StepName = 'welcome' | 'name' | 'network' | 'dns' | 'admin' | 'join' | 'done';

const ALL_STEPS: StepName[] = ['welcome', 'name', 'network', 'dns', 'admin', 'join', 'done'];

const TITLES: Record<StepName, string> = {
  welcome: 'Welcome',
  name: 'Server name',
  network: 'Network',
  dns: 'DNS',
  admin: 'Admin',
  join: 'Who may join',
  done: 'Done',
};

/** The answers each step asks for: the server's problems for them show on that step. */
const FIELDS: Partial<Record<StepName, string[]>> = {
  name: ['kind', 'server_name', 'reachability', 'delegated_host'],
  network: ['client_listen', 'federation_port', 'tls_mode', 'certificate_file', 'private_key_file', 'acme_contact', 'public_ipv4'],
  join: ['registration'],
};

export interface AdminAnswers {
  username: string;
  password: string;
  confirm: string;
}

interface Outcome {
  userId: string;
  token: RegistrationToken | null;
  status: Status | null;
}

/** The steps this server goes through: a LAN-only server publishes nothing, so it skips DNS. */
export function steps(answers: SetupAnswers): StepName[] {
  return answers.kind === 'lan' ? ALL_STEPS.filter((step) => step !== 'dns') : ALL_STEPS;
}

export function Wizard({ backend, onFinished }: { backend: Backend; onFinished: () => void }) {
  const [answers, setAnswers] = useState<SetupAnswers | null>(null);
  const [admin, setAdmin] = useState<AdminAnswers>({ username: '', password: '', confirm: '' });
  const [step, setStep] = useState<StepName>('welcome');
  const [problems, setProblems] = useState<AnswerProblem[]>([]);
  const [check, setCheck] = useState<SetupCheck | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [progress, setProgress] = useState({ applied: false, admin: false });

  useEffect(() => {
    backend
      .setupAnswers()
      .then(setAnswers)
      .catch((e) => setError(describe(e)));
  }, []);

  // Kith's warnings follow the answers as they are typed (the name that can never change,
  // a certificate other servers refuse, open registration). Problems wait for Next.
  useEffect(() => {
    if (!answers || !(step in FIELDS)) return;
    let cancelled = false;
    const timer = setTimeout(() => {
      backend.checkSetup(answers).then(
        (result) => !cancelled && setCheck(result),
        () => {},
      );
    }, 400);
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [answers, step]);

  if (!answers) {
    return (
      <main class="wizard">
        <h1>Set up Kith</h1>
        {error ? <ErrorText error={error} /> : <p>Loading…</p>}
      </main>
    );
  }
  const order = steps(answers);
  const index = order.indexOf(step);
  const update = (change: Partial<SetupAnswers>) => {
    setAnswers({ ...answers, ...change });
    // What Kith said about an answer no longer holds once it is edited; Next asks again.
    setProblems((shown) => shown.filter((p) => !(p.field in change)));
  };
  const problem = (field: string) => problems.find((p) => p.field === field)?.message;

  const updateAdmin = (change: AdminAnswers) => {
    setAdmin(change);
    const edited = (Object.keys(change) as (keyof AdminAnswers)[]).filter((key) => change[key] !== admin[key]);
    setProblems((shown) => shown.filter((p) => !edited.includes(p.field as keyof AdminAnswers)));
  };

  const go = (to: StepName) => {
    setProblems([]);
    setError(null);
    setStep(to);
  };

  /** Checks the answers of `name` with Kith; true when none has a problem. */
  const checkStep = async (name: StepName): Promise<boolean> => {
    const fields = FIELDS[name];
    if (!fields) return true;
    const result = await backend.checkSetup(answers);
    setCheck(result);
    // Problems with no field (the whole config) are shown on every step, and stop Finish.
    const last = name === 'join';
    setProblems(result.problems.filter((p) => fields.includes(p.field) || p.field === ''));
    return !result.problems.some((p) => fields.includes(p.field) || (last && p.field === ''));
  };

  const next = async () => {
    setError(null);
    setBusy('next');
    try {
      if (step === 'admin') {
        const result = await backend.checkAdmin(admin.username, admin.password, answers.server_name);
        setProblems(result.problems);
        if (result.problems.length > 0) return;
        if (admin.password !== admin.confirm) {
          setProblems([{ field: 'confirm', message: 'The two passwords differ.' }]);
          return;
        }
      } else if (!(await checkStep(step))) {
        return;
      }
      if (step === 'join') {
        await finish();
        return;
      }
      go(order[index + 1]);
    } catch (e) {
      setError(describe(e));
    } finally {
      setBusy(null);
    }
  };

  const finish = async () => {
    const all = await backend.checkSetup(answers);
    if (all.problems.length > 0) {
      setProblems(all.problems);
      setError(`Kith found a problem: ${all.problems[0].message}`);
      return;
    }
    let applied = progress.applied;
    if (!applied) {
      setBusy('Saving and restarting…');
      await backend.applySetup(answers);
      applied = true;
      setProgress({ applied, admin: false });
    }
    setBusy('Creating the admin account…');
    const login = await backend.createFirstAdmin(admin.username, admin.password);
    setProgress({ applied, admin: true });
    let token: RegistrationToken | null = null;
    if (answers.registration === 'token') {
      setBusy('Creating the first invite token…');
      token = await backend.createToken(5, null);
    }
    const status = await backend.status().catch(() => null);
    setOutcome({ userId: login.user_id, token, status });
    go('done');
  };

  return (
    <main class="wizard">
      <h1>Set up Kith</h1>
      <ol class="stepper" data-testid="stepper">
        {ALL_STEPS.map((name, i) => {
          const skipped = !order.includes(name);
          const state = name === step ? 'current' : skipped ? 'skipped' : order.indexOf(name) < index ? 'past' : '';
          return (
            <li class={state} key={name} title={skipped ? 'Not needed for a LAN-only server' : undefined}>
              <span>{i + 1}</span> {TITLES[name]}
            </li>
          );
        })}
      </ol>
      <section class="card wizard-step" data-testid={`step-${step}`}>
        {problems
          .filter((p) => p.field === '')
          .map((p, i) => (
            <p class="error" key={i} data-testid="general-problem">
              {p.message}
            </p>
          ))}
        {step === 'welcome' && <Welcome />}
        {step === 'name' && <NameStep answers={answers} update={update} problem={problem} />}
        {step === 'network' && <NetworkStep answers={answers} update={update} problem={problem} backend={backend} />}
        {step === 'dns' && <DnsStep answers={answers} backend={backend} />}
        {step === 'admin' && (
          <AdminStep admin={admin} setAdmin={updateAdmin} problem={problem} backend={backend} serverName={answers.server_name} />
        )}
        {step === 'join' && <JoinStep answers={answers} update={update} problem={problem} />}
        {step === 'done' && outcome && <Done answers={answers} outcome={outcome} />}
        {(check?.warnings ?? [])
          .filter((w) => FIELDS[step]?.includes(w.field))
          .map((w) => (
            <p class="warning" key={w.message} data-testid="warning">
              {w.message}
            </p>
          ))}
        <ErrorText error={error} />
        {busy && busy !== 'next' && <p class="busy" data-testid="busy">{busy}</p>}
      </section>
      <div class="nav">
        {step !== 'welcome' && step !== 'done' && !progress.admin && (
          <button type="button" data-testid="back" onClick={() => go(order[index - 1])} disabled={busy !== null}>
            Back
          </button>
        )}
        {step === 'done' ? (
          <button type="button" class="primary" data-testid="to-dashboard" onClick={onFinished}>
            Go to the dashboard
          </button>
        ) : (
          <button type="button" class="primary" data-testid="next" onClick={next} disabled={busy !== null}>
            {step === 'join' ? 'Finish' : 'Next'}
          </button>
        )}
      </div>
    </main>
  );
}

function Welcome() {
  return (
    <div>
      <h2>Your own Matrix server</h2>
      <p>
        A homeserver keeps your family's or team's accounts, rooms and messages — on this computer, not someone else's. With
        Element or any Matrix app, you chat with each other, and with anyone on Matrix: matrix.org, other homes, other
        companies.
      </p>
      <p>What you need:</p>
      <ul>
        <li>
          <strong>To talk with the whole Matrix network:</strong> a domain name you own (example.org) or a free dynamic-DNS
          name, and a router that can forward a port to this computer.
        </li>
        <li>
          <strong>Only at home:</strong> nothing. Choose "LAN only" and phones on your Wi-Fi connect directly.
        </li>
      </ul>
      <p>It takes a few minutes. Everything can be changed later, except the server's name.</p>
    </div>
  );
}

type Props = { answers: SetupAnswers; update: (change: Partial<SetupAnswers>) => void; problem: (field: string) => string | undefined };

function NameStep({ answers, update, problem }: Props) {
  return (
    <div>
      <h2>What is your server called?</h2>
      <Choices
        name="kind"
        value={answers.kind}
        onChange={(kind) => update({ kind })}
        options={[
          { value: 'lan', title: 'LAN only', text: 'Only people on this home network; no federation.' },
          { value: 'domain', title: 'My own domain', text: 'A name you own, such as example.org.' },
          { value: 'dynamic_dns', title: 'A dynamic-DNS name', text: 'A free name that follows your home address, such as myhome.duckdns.org.' },
        ]}
      />
      <Field
        id="server_name"
        label="Server name"
        value={answers.server_name}
        onInput={(server_name) => update({ server_name })}
        problem={problem('server_name')}
        placeholder={answers.kind === 'lan' ? 'family.home' : 'example.org'}
        hint={<>User IDs will look like @alice:{answers.server_name || 'name'}. This name can never change once accounts exist.</>}
      />
      {answers.kind === 'domain' && (
        <>
          <Choices
            name="reachability"
            value={answers.reachability}
            onChange={(reachability) => update({ reachability })}
            options={[
              { value: 'direct', title: 'Kith runs at this name', text: 'The name points at this computer.' },
              { value: 'well_known', title: 'My website at this name delegates to this machine', text: 'A website already lives at this name; a small file on it points other servers here.' },
            ]}
          />
          {answers.reachability === 'well_known' && (
            <Field
              id="delegated_host"
              label="This computer's host name"
              value={answers.delegated_host}
              onInput={(delegated_host) => update({ delegated_host })}
              problem={problem('delegated_host')}
              placeholder="matrix.example.org"
            />
          )}
        </>
      )}
    </div>
  );
}

function NetworkStep({ answers, update, problem, backend }: Props & { backend: Backend }) {
  const [mapping, setMapping] = useState<string | null>(null);
  const federating = answers.kind !== 'lan';
  return (
    <div>
      <h2>Network and certificate</h2>
      <Field
        id="client_listen"
        label="Address for apps (Element)"
        value={answers.client_listen}
        onInput={(client_listen) => update({ client_listen })}
        problem={problem('client_listen')}
        hint="Where Matrix apps connect: 127.0.0.1:8008 for this computer only, 0.0.0.0:8008 for every device on your network."
      />
      {federating && (
        <>
          <Field
            id="federation_port"
            label="Port for other servers"
            value={String(answers.federation_port)}
            onInput={(text) => update({ federation_port: Number.parseInt(text, 10) || 0 })}
            problem={problem('federation_port')}
            hint="Other Matrix servers connect here; 8448 is the standard port."
          />
          <h3>Certificate</h3>
          <Choices
            name="tls_mode"
            value={answers.tls_mode}
            onChange={(tls_mode) => update({ tls_mode })}
            options={[
              { value: 'acme', title: 'Automatic certificate (Let\u2019s Encrypt)', text: 'Kith gets and renews a trusted certificate; port 443 or 80 must reach this machine.' },
              { value: 'files', title: 'My own certificate files', text: 'You give the paths of a PEM certificate chain and key.' },
              { value: 'proxy', title: 'Behind my reverse proxy', text: 'The proxy holds the certificate and forwards to Kith.' },
              { value: 'self-signed', title: 'Self-signed (LAN only)', text: 'No setup, but other servers on the internet will not federate.' },
            ]}
          />
          {answers.tls_mode === 'files' && (
            <>
              <Field id="certificate_file" label="Certificate chain (PEM)" value={answers.certificate_file} onInput={(certificate_file) => update({ certificate_file })} problem={problem('certificate_file')} />
              <Field id="private_key_file" label="Private key (PEM)" value={answers.private_key_file} onInput={(private_key_file) => update({ private_key_file })} problem={problem('private_key_file')} />
            </>
          )}
          {answers.tls_mode === 'acme' && (
            <Field id="acme_contact" label="Email for expiry notices (optional)" value={answers.acme_contact} onInput={(acme_contact) => update({ acme_contact })} problem={problem('acme_contact')} />
          )}
          <div class="row">
            <button
              type="button"
              data-testid="map-ports"
              onClick={async () => {
                setMapping('Asking your router…');
                try {
                  const report = await backend.portMapping([[answers.federation_port, answers.federation_port]]);
                  // The router's public address is what the DNS records point at.
                  if (report.external_ip && /^\d+\.\d+\.\d+\.\d+$/.test(report.external_ip) && !answers.public_ipv4) {
                    update({ public_ipv4: report.external_ip });
                  }
                  const mapped = report.mapped.map((m) => `${m.external_port} → ${m.internal}`).join(', ');
                  setMapping(`Your router forwards ${mapped || 'nothing'}${report.external_ip ? `; its public address is ${report.external_ip}` : ''}.${report.failed.length ? ' ' + report.failed.join(' ') : ''}`);
                } catch (e) {
                  setMapping(describe(e));
                }
              }}
            >
              Ask my router to forward port {answers.federation_port}
            </button>
          </div>
          {mapping && <p class="hint" data-testid="mapping">{mapping}</p>}
          <Field
            id="public_ipv4"
            label="Public IPv4 address (optional)"
            value={answers.public_ipv4}
            onInput={(public_ipv4) => update({ public_ipv4 })}
            problem={problem('public_ipv4')}
            hint="The address your router has on the internet; the DNS records point at it. Asking your router fills it in."
          />
        </>
      )}
    </div>
  );
}

function DnsStep({ answers, backend }: { answers: SetupAnswers; backend: Backend }) {
  const [check, setCheck] = useState<SetupCheck | null>(null);
  const [report, setReport] = useState<Report | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [checking, setChecking] = useState(false);
  useEffect(() => {
    backend.checkSetup(answers).then(setCheck, (e) => setError(describe(e)));
  }, []);
  const plan = check?.delegation;
  return (
    <div>
      <h2>Tell the internet where your server is</h2>
      {!plan && !error && <p>Working out what to publish…</p>}
      {plan && (
        <>
          <p>{plan.summary}</p>
          <table class="records" data-testid="records">
            <thead>
              <tr>
                <th>Name</th>
                <th>Type</th>
                <th>Value</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {plan.records.map((record) => (
                <tr key={record.zone_line}>
                  <td>{record.name}</td>
                  <td>{record.kind}</td>
                  <td>
                    <code>{record.value}</code>
                    <div class="hint">{record.why}</div>
                  </td>
                  <td>{record.value.startsWith('<') ? <span class="hint">Fill in on the Network step</span> : <CopyButton text={record.value} />}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <details>
            <summary>As zone-file lines</summary>
            <pre>{plan.zone_file}</pre>
            <CopyButton text={plan.zone_file} />
          </details>
          {[plan.well_known_server, plan.well_known_client].map(
            (file) =>
              file && (
                <div class="wellknown" key={file.url}>
                  <p>
                    {file.served_by_kith ? 'Kith serves' : 'Publish'} <code>{file.url}</code>: {file.why}
                  </p>
                  <pre>{file.body}</pre>
                  <CopyButton text={file.body} />
                </div>
              ),
          )}
          <p>
            The certificate must be valid for <strong>{plan.certificate_name}</strong>.
          </p>
          {plan.alternative && <p class="hint">{plan.alternative}</p>}
        </>
      )}
      <div class="row">
        <button
          type="button"
          data-testid="check-now"
          disabled={checking}
          onClick={async () => {
            setChecking(true);
            setError(null);
            try {
              setReport(await backend.federationCheck(answers.server_name));
            } catch (e) {
              setError(describe(e));
            } finally {
              setChecking(false);
            }
          }}
        >
          {checking ? 'Checking…' : 'Check now'}
        </button>
        <span class="hint">It is normal for this to fail until the records are published and Kith runs with these settings.</span>
      </div>
      <ErrorText error={error} />
      {report && <ReportView report={report} />}
    </div>
  );
}

function AdminStep(props: {
  admin: AdminAnswers;
  setAdmin: (admin: AdminAnswers) => void;
  problem: (field: string) => string | undefined;
  backend: Backend;
  serverName: string;
}) {
  const { admin, setAdmin, problem } = props;
  const [strength, setStrength] = useState<AdminCheck | null>(null);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => {
    if (timer.current) clearTimeout(timer.current);
    if (!admin.username && !admin.password) {
      setStrength(null);
      return;
    }
    timer.current = setTimeout(() => {
      props.backend.checkAdmin(admin.username, admin.password, props.serverName).then(setStrength, () => setStrength(null));
    }, 250);
  }, [admin.username, admin.password]);
  return (
    <div>
      <h2>Your admin account</h2>
      <p>This account runs the server: it creates the others, and it is the one you log in to the dashboard with.</p>
      <Field id="admin_username" label="User name" value={admin.username} onInput={(username) => setAdmin({ ...admin, username })} problem={problem('username')} autocomplete="username" />
      {strength && admin.username && (
        <p class="hint" data-testid="user-id">
          Your user ID will be {strength.user_id}.
        </p>
      )}
      <Field id="admin_password" label="Password" type="password" value={admin.password} onInput={(password) => setAdmin({ ...admin, password })} problem={problem('password')} autocomplete="new-password" />
      {strength && admin.password && (
        <div class={`strength s${strength.strength.score}`} data-testid="strength">
          <div class="bar">
            <span style={{ width: `${(strength.strength.score + 1) * 20}%` }} />
          </div>
          <span data-testid="strength-label">{strength.strength.label}</span>
          {strength.strength.suggestions.map((s) => (
            <p class="hint" key={s}>
              {s}
            </p>
          ))}
        </div>
      )}
      <Field id="admin_confirm" label="Password again" type="password" value={admin.confirm} onInput={(confirm) => setAdmin({ ...admin, confirm })} problem={problem('confirm')} autocomplete="new-password" />
    </div>
  );
}

function JoinStep({ answers, update }: Props) {
  return (
    <div>
      <h2>Who may create an account?</h2>
      <Choices
        name="registration"
        value={answers.registration}
        onChange={(registration) => update({ registration })}
        options={[
          { value: 'closed', title: 'Only accounts I create', text: 'You make each account from the dashboard.' },
          { value: 'token', title: 'People with an invite token', text: 'You give a token to each person you invite; a first one is made now.' },
          { value: 'open', title: 'Anyone who can reach the server', text: 'No invitation needed.' },
        ]}
      />
      <p class="hint">Finish saves these settings and restarts the server with them.</p>
    </div>
  );
}

function Done({ answers, outcome }: { answers: SetupAnswers; outcome: Outcome }) {
  const address = outcome.status ? `http://${outcome.status.client_addr.replace('0.0.0.0', window.location.hostname || '127.0.0.1')}` : '';
  return (
    <div data-testid="done">
      <h2>Your server is ready</h2>
      <dl class="summary">
        <dt>Server name</dt>
        <dd data-testid="done-server">{answers.server_name}</dd>
        <dt>Admin</dt>
        <dd data-testid="done-admin">{outcome.userId}</dd>
        <dt>Who may join</dt>
        <dd>{answers.registration === 'token' ? 'people with an invite token' : answers.registration === 'open' ? 'anyone' : 'only accounts you create'}</dd>
        {outcome.token && (
          <>
            <dt>First invite token</dt>
            <dd>
              <code data-testid="done-token">{outcome.token.token}</code> <CopyButton text={outcome.token.token} /> (5 accounts)
            </dd>
          </>
        )}
        {address && (
          <>
            <dt>Address for apps</dt>
            <dd>
              <code data-testid="done-address">{address}</code>
            </dd>
          </>
        )}
      </dl>
      <p>
        Open <a href="https://app.element.io/#/login" target="_blank" rel="noreferrer">Element</a>, choose "Edit" next to the
        homeserver, and enter <code>{address || answers.server_name}</code>. On a phone, scan this:
      </p>
      {address && <Qr text={address} />}
    </div>
  );
}
