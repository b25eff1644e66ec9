import { describe, expect, it } from 'vitest';
import { runCli, runMain } from './helpers/cli.js';

/** stdout holds exactly one JSON object (one line) and it says the command failed with `exitCode`. */
function oneFailure(stdout: string, exitCode: number, code: string): Record<string, unknown> {
  const lines = stdout.split('\n').filter((l) => l !== '');
  expect(lines).toHaveLength(1);
  const object = JSON.parse(lines[0]!) as Record<string, unknown>;
  expect(object).toMatchObject({ status: 'failed', exit_code: exitCode, error: { code } });
  return object;
}

describe('options only where they mean something', () => {
  for (const args of [['runs', '--dry-run'], ['history', 'fhir_resources', 'Patient/1', '--dry-run'], ['sql', 'select 1', '--dry-run'], ['runs', '--lang', 'fr'], ['export-csv', 'rejects', '--lang', 'fr']]) {
    it(`${args.join(' ')}: an unknown option, exit 2`, async () => {
      const result = await runMain(args, { env: { CAREPIPE_DATA_DIR: 'memory://' } });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`unknown option '${args.find((a) => a === '--dry-run' || a === '--lang')}'`);
    });
  }

  it('--help lists --dry-run and --lang for commands that use them, not for the others', async () => {
    const help = async (...args: string[]) => (await runMain([...args, '--help'])).stdout;
    const appointments = await help('ingest-appointments');
    expect(appointments).toContain('--dry-run');
    expect(appointments).toContain('--lang <lang>');
    const fhir = await help('ingest-fhir');
    expect(fhir).toContain('--dry-run');
    expect(fhir).not.toContain('--lang');
    for (const command of [['runs'], ['history'], ['config'], ['sql'], ['migrate'], ['db', 'serve'], ['directory-lookup', 'list'], ['directory-lookup', 'search'], ['view', 'run']]) {
      const text = await help(...command);
      expect(text, command.join(' ')).not.toContain('--dry-run');
      expect(text, command.join(' ')).not.toContain('--lang');
    }
  });
});

describe('--json prints one JSON object even when the command fails before it starts', () => {
  it('a bad database URL in config', async () => {
    const result = await runCli(['config', '--json', '--database-url', 'mysql://x']);
    expect(result.code).toBe(2);
    oneFailure(result.stdout, 2, 'CONFIG_INVALID');
    expect(result.stderr).toBe('carepipe: the database URL must start with postgres:// or postgresql://\n');
  });

  it('a bad option value, before --json is even parsed', async () => {
    const result = await runCli(['runs', '--limit', 'many', '--json']);
    expect(result.code).toBe(2);
    const failure = oneFailure(result.stdout, 2, 'USAGE');
    expect((failure.error as { message: string }).message).toContain('--limit must be a whole number');
  });

  it('an unknown option and a missing argument', async () => {
    oneFailure((await runCli(['runs', '--json', '--frobnicate'])).stdout, 2, 'USAGE');
    oneFailure((await runCli(['history', '--json'])).stdout, 2, 'USAGE');
  });

  it('a usage error a command raises before opening the database', async () => {
    const result = await runCli(['directory-lookup', 'import', '--json']);
    expect(result.code).toBe(2);
    oneFailure(result.stdout, 2, 'USAGE');
  });

  it('CAREPIPE_JSON=1 asks for it too', async () => {
    const result = await runCli(['runs', '--limit', 'x'], { env: { CAREPIPE_JSON: '1' } });
    oneFailure(result.stdout, 2, 'USAGE');
  });

  it('an unreachable database, exit 4', async () => {
    const result = await runCli(['runs', '--json', '--database-url', 'postgres://carepipe@127.0.0.1:1/none']);
    expect(result.code).toBe(4);
    oneFailure(result.stdout, 4, 'DB_UNREACHABLE');
  });

  it('a bad config file', async () => {
    const result = await runCli(['ingest-fhir', 'x.ndjson', '--json', '--config', '/nonexistent/carepipe.config.json']);
    expect(result.code).toBe(2);
    oneFailure(result.stdout, 2, 'CONFIG_INVALID');
  });
});
