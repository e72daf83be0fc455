// Some systems run with the "C" locale, which the webview reports as the language "C":
// not a language tag, so Intl (used by the charts) throws. Fall back to English there.
// Imported first by main.tsx, before anything that formats numbers or dates.

try {
  new Intl.NumberFormat(navigator.language);
} catch {
  Object.defineProperty(navigator, 'language', { value: 'en-US', configurable: true });
  Object.defineProperty(navigator, 'languages', { value: ['en-US'], configurable: true });
}

export {};
