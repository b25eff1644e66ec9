/**
 * Message catalogues: one entry per message key, worded in every supported language. A reason code
 * or error code never changes with the language; only the sentence around it does. A domain declares
 * its catalogue with `defineCatalogue` and words messages with `translate(lang, key, params)`.
 */

export const LANGS = ['en', 'fr'] as const;
export type Lang = (typeof LANGS)[number];

export type MessageParams = Record<string, string | number>;
type Wording = string | ((params: MessageParams) => string);

/** Every key worded in every language: the type checker refuses a catalogue with a gap. */
export type Catalogue<K extends string> = Record<K, Record<Lang, Wording>>;

export function defineCatalogue<K extends string>(catalogue: Catalogue<K>): Catalogue<K> {
  return catalogue;
}

/** The message for `key` in `lang`; `{name}` placeholders are filled from `params`. */
export function translate<K extends string>(catalogue: Catalogue<K>, lang: Lang, key: K, params: MessageParams = {}): string {
  const entry = catalogue[key];
  if (!entry) return key;
  const wording = entry[lang] ?? entry.en;
  const text = typeof wording === 'function' ? wording(params) : wording;
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => (params[name] === undefined ? whole : String(params[name])));
}
