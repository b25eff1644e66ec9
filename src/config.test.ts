import { describe, expect, it } from 'vitest';
import { maskSecrets, redactArgs, resolveSettings } from './config.js';

describe('redactArgs', () => {
  it('masks the values of secret flags in both spellings and passwords in URLs', () => {
    expect(redactArgs(['--token', 'abc', '--client-secret=xyz', '--database-url', 'postgres://u:pw@h/db', 'file.json'])).toEqual([
      '--token',
      '****',
      '--client-secret=****',
      '--database-url',
      'postgres://u:****@h/db',
      'file.json',
    ]);
  });
});

describe('maskSecrets', () => {
  it('masks nested secret keys and leaves the rest', () => {
    expect(maskSecrets({ backends: { noteworth: { baseUrl: 'http://x', password: 'p', token: 't' } } })).toEqual({
      backends: { noteworth: { baseUrl: 'http://x/', password: '****', token: '****' } },
    });
  });
});

describe('resolveSettings', () => {
  it('takes flags over environment over defaults', () => {
    const settings = resolveSettings({ dataDir: '/flag' }, { CAREPIPE_DATA_DIR: '/env', DATABASE_URL: 'postgres://h/db' }, '/cwd');
    expect(settings.dataDir).toBe('/flag');
    expect(settings.databaseUrl).toBe('postgres://h/db');
  });

  it('puts the embedded database under CAREPIPE_HOME/db, else ./.carepipe/db', () => {
    expect(resolveSettings({}, { CAREPIPE_HOME: '/srv/cp' }, '/cwd').dataDir).toBe('/srv/cp/db');
    expect(resolveSettings({}, {}, '/cwd').dataDir).toBe('/cwd/.carepipe/db');
  });

  it('keeps memory:// as the in-memory database rather than a folder of that name', () => {
    expect(resolveSettings({ dataDir: 'memory://' }, {}, '/cwd').dataDir).toBe('memory://');
    expect(resolveSettings({}, { CAREPIPE_DATA_DIR: 'memory://' }, '/cwd').dataDir).toBe('memory://');
  });

  it('reads the language from --lang, then LANG', () => {
    expect(resolveSettings({}, { LANG: 'fr_FR.UTF-8' }, '/').lang).toBe('fr');
    expect(resolveSettings({ lang: 'en' }, { LANG: 'fr_FR.UTF-8' }, '/').lang).toBe('en');
  });
});
