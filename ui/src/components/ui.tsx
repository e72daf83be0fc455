// Small building blocks shared by the wizard and the dashboard.

import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { BackendError } from '../lib/api';

/** A message for any failure: the server's sentence when it gave one. */
export function describe(error: unknown): string {
  if (error instanceof BackendError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

export function ErrorText({ error, testid }: { error: string | null; testid?: string }) {
  if (!error) return null;
  return (
    <p class="error" role="alert" data-testid={testid ?? 'error'}>
      {error}
    </p>
  );
}

/** A labelled input with the server's problem for it underneath. */
export function Field(props: {
  id: string;
  label: string;
  value: string;
  onInput: (value: string) => void;
  problem?: string;
  hint?: ComponentChildren;
  type?: string;
  placeholder?: string;
  autocomplete?: string;
}) {
  return (
    <div class={props.problem ? 'field invalid' : 'field'}>
      <label for={props.id}>{props.label}</label>
      <input
        id={props.id}
        data-testid={props.id}
        type={props.type ?? 'text'}
        value={props.value}
        placeholder={props.placeholder}
        autocomplete={props.autocomplete ?? 'off'}
        onInput={(event) => props.onInput((event.target as HTMLInputElement).value)}
      />
      {props.hint && <p class="hint">{props.hint}</p>}
      {props.problem && (
        <p class="problem" data-testid={`${props.id}-problem`}>
          {props.problem}
        </p>
      )}
    </div>
  );
}

/** A choice among cards, each with a title and one sentence. */
export function Choices<T extends string>(props: {
  name: string;
  value: T;
  options: { value: T; title: string; text: string }[];
  onChange: (value: T) => void;
}) {
  return (
    <div class="choices" role="radiogroup">
      {props.options.map((option) => (
        <label class={option.value === props.value ? 'choice chosen' : 'choice'} key={option.value}>
          <input
            type="radio"
            name={props.name}
            value={option.value}
            data-testid={`${props.name}-${option.value}`}
            checked={option.value === props.value}
            onChange={() => props.onChange(option.value)}
          />
          <strong>{option.title}</strong>
          <span>{option.text}</span>
        </label>
      ))}
    </div>
  );
}

export function CopyButton({ text, testid }: { text: string; testid?: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <button
      type="button"
      class="small"
      data-testid={testid}
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(text);
          setCopied(true);
          setTimeout(() => setCopied(false), 1500);
        } catch {
          // No clipboard here (an insecure context): the text stays visible to copy by hand.
        }
      }}
    >
      {copied ? 'Copied' : 'Copy'}
    </button>
  );
}

export function mib(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '–';
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

export function duration(secs: number): string {
  const days = Math.floor(secs / 86400);
  const hours = Math.floor((secs % 86400) / 3600);
  const minutes = Math.floor((secs % 3600) / 60);
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours} h ${minutes} min`;
  if (minutes > 0) return `${minutes} min`;
  return `${secs} s`;
}

export function when(ms: number | null | undefined): string {
  if (!ms) return 'never';
  return new Date(ms).toLocaleString();
}

export function ago(ms: number): string {
  return `${duration(Math.max(0, Math.round((Date.now() - ms) / 1000)))} ago`;
}

export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
