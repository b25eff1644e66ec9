import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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

  it('finds the nearest .carepipe/db in a parent folder, as git finds .git; CAREPIPE_HOME and --data-dir still win', () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'carepipe-home-'));
    try {
      const project = path.join(root, 'project');
      const deep = path.join(project, 'exports', '2026');
      mkdirSync(path.join(project, '.carepipe', 'db'), { recursive: true });
      mkdirSync(deep, { recursive: true });
      expect(resolveSettings({}, {}, deep).dataDir).toBe(path.join(project, '.carepipe', 'db'));
      expect(resolveSettings({}, {}, project).dataDir).toBe(path.join(project, '.carepipe', 'db'));
      // A .carepipe/ without db/ (a config or cache folder) is not a database.
      mkdirSync(path.join(deep, '.carepipe'));
      expect(resolveSettings({}, {}, deep).dataDir).toBe(path.join(project, '.carepipe', 'db'));
      expect(resolveSettings({}, { CAREPIPE_HOME: '/srv/cp' }, deep).dataDir).toBe('/srv/cp/db');
      expect(resolveSettings({ dataDir: 'here' }, {}, deep).dataDir).toBe(path.join(deep, 'here'));
      // Nothing found above: ./.carepipe/db, where the first writing command creates it.
      expect(resolveSettings({}, {}, root).dataDir).toBe(path.join(root, '.carepipe', 'db'));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('takes a --db-schema that leaves room for its NAME_appointments and is not named like one of its schemas', () => {
    expect(resolveSettings({ dbSchema: 't_0a1b2c3d4e5f' }, {}, '/cwd').dbSchema).toBe('t_0a1b2c3d4e5f');
    expect(resolveSettings({ dbSchema: 'a'.repeat(50) }, {}, '/cwd').dbSchema).toBe('a'.repeat(50));
    expect(() => resolveSettings({ dbSchema: 'a'.repeat(51) }, {}, '/cwd')).toThrow(/at most 50/);
    expect(() => resolveSettings({ dbSchema: 'ward_fhir' }, {}, '/cwd')).toThrow(/'ward_fhir' is taken by carepipe's layout \(NAME_fhir holds the fhir tables of NAME\)/);
    expect(() => resolveSettings({}, { CAREPIPE_DB_SCHEMA: 'carepipe' }, '/cwd')).toThrow(/'carepipe' is taken/);
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

describe('maxResponseMb', () => {
  it('takes --max-response-mb, then CAREPIPE_MAX_RESPONSE_MB, then the config file, then 512', () => {
    expect(resolveSettings({}, {}, '/').maxResponseMb).toBe(512);
    expect(resolveSettings({}, { CAREPIPE_MAX_RESPONSE_MB: '64' }, '/').maxResponseMb).toBe(64);
    expect(resolveSettings({ maxResponseMb: 8 }, { CAREPIPE_MAX_RESPONSE_MB: '64' }, '/').maxResponseMb).toBe(8);
  });

  it('reads maxResponseMb from the config file below the environment', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-config-'));
    try {
      writeFileSync(path.join(dir, 'carepipe.config.json'), JSON.stringify({ maxResponseMb: 32 }));
      expect(resolveSettings({}, {}, dir).maxResponseMb).toBe(32);
      expect(resolveSettings({}, { CAREPIPE_MAX_RESPONSE_MB: '16' }, dir).maxResponseMb).toBe(16);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a value that is not a positive number, naming where it came from', () => {
    expect(() => resolveSettings({}, { CAREPIPE_MAX_RESPONSE_MB: 'lots' }, '/')).toThrow("CAREPIPE_MAX_RESPONSE_MB must be a positive number of megabytes, not 'lots'");
    expect(() => resolveSettings({}, { CAREPIPE_MAX_RESPONSE_MB: '0' }, '/')).toThrow('CAREPIPE_MAX_RESPONSE_MB must be a positive number');
  });
});

describe('the database URL', () => {
  it('is refused, without its password, when a / or # in the password is not percent-encoded', () => {
    for (const url of ['postgres://u:ab/cd@db.example:5432/x', 'postgres://u:ab#cd@db.example/x', 'postgres://u:12/cd@db.example/x', 'postgres://u:12#cd@db.example/x']) {
      let message = '';
      try {
        resolveSettings({ databaseUrl: url }, {}, '/');
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message, url).toMatch(/percent-encode them \(\/ as %2F, # as %23/);
      expect(message, url).not.toContain('cd');
    }
  });

  it('is taken when the password is percent-encoded, and for a socket URL without host', () => {
    expect(resolveSettings({ databaseUrl: 'postgres://u:ab%2Fcd%23e@db.example:5432/x' }, {}, '/').databaseUrl).toBe('postgres://u:ab%2Fcd%23e@db.example:5432/x');
    expect(resolveSettings({ databaseUrl: 'postgresql:///x?host=/var/run/postgresql' }, {}, '/').databaseUrl).toBe('postgresql:///x?host=/var/run/postgresql');
  });
});
