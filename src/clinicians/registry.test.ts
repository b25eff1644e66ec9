import { describe, expect, it } from 'vitest';
import { backendProblems, BackendRegistry, builtinRegistry } from './registry.js';
import { noteworth } from './backends/noteworth.js';

const complete = {
  name: 'acme',
  description: 'ACME clinicians',
  completeListing: true,
  settings: [{ name: 'baseUrl', description: 'base URL' }],
  siteUrl: () => 'http://acme',
  authenticate: async () => null,
  authHeader: () => ({}),
  fetchClinicians: async function* () {},
  mapToClinician: () => ({ ok: false, reason: 'RECORD_INVALID', message: 'x' }),
};

describe('BackendRegistry', () => {
  it('registers the shipped backends', () => {
    expect(builtinRegistry().names()).toEqual(['noteworth', 'fhir-practitioner']);
  });

  it('refuses a backend without authHeader and completeListing, naming both', () => {
    const { authHeader: _a, completeListing: _c, ...partial } = complete;
    expect(() => new BackendRegistry().register(partial)).toThrow(
      'backend "acme" from registration is not a clinician backend: missing completeListing (boolean: does one listing hold every clinician?), authHeader() (function)',
    );
  });

  it('refuses a completeListing that is not a boolean and a fetchClinicians that is not a function', () => {
    expect(backendProblems({ ...complete, completeListing: 'yes', fetchClinicians: [] })).toEqual([
      'completeListing (boolean: does one listing hold every clinician?)',
      'fetchClinicians() (function)',
    ]);
  });

  it('refuses a second backend of the same name and names the known ones for an unknown name', () => {
    const registry = new BackendRegistry().register(complete);
    expect(() => registry.register({ ...complete })).toThrow('a backend named "acme" is already registered');
    expect(() => registry.get('nope')).toThrow('unknown backend "nope"; registered: acme');
  });

  it('accepts a complete backend', () => {
    expect(backendProblems(complete)).toEqual([]);
    expect(backendProblems(noteworth)).toEqual([]);
  });
});
