import { describe, expect, it } from 'vitest';
import { maskSecrets, maskText, maskUrl } from './mask.js';

describe('maskUrl', () => {
  it('masks the userinfo password and every secret query parameter, keeping the rest', () => {
    expect(maskUrl('https://etl:hunter2@fhir.example/r4/Patient?_count=10&api_key=K1&token=T1&key=K2&password=P&secret=S&signature=G')).toBe(
      'https://etl:****@fhir.example/r4/Patient?_count=10&api_key=****&token=****&key=****&password=****&secret=****&signature=****',
    );
  });

  it('masks what it can of a text that is not a URL', () => {
    expect(maskUrl('http://u:pw@[bad')).not.toContain('pw');
  });
});

describe('maskText', () => {
  // A secret may hold any character but a separator, so the colon after it goes with it.
  it('masks URLs inside prose, in retry lines and JSON, and leaves ordinary pairs alone', () => {
    const line = 'GET http://etl:hunter2@127.0.0.1:8080/Patient?_count=5&api_key=K1: HTTP 503; attempt 1';
    expect(maskText(line)).toBe('GET http://etl:****@127.0.0.1:8080/Patient?_count=5&api_key=**** HTTP 503; attempt 1');
    expect(maskText('birth_date=2000-01-01 token=abc')).toBe('birth_date=2000-01-01 token=****');
    const json = JSON.stringify({ url: 'http://h/?x="q"&access_token=abc' });
    expect(JSON.parse(maskText(json))).toEqual({ url: 'http://h/?x="q"&access_token=****' });
  });
});

describe('maskSecrets', () => {
  it('masks secret settings by name and URLs in any string', () => {
    expect(maskSecrets({ password: 'p', keyId: 'kid-1', note: 'see https://u:pw@h/x' })).toEqual({ password: '****', keyId: 'kid-1', note: 'see https://u:****@h/x' });
  });
});
