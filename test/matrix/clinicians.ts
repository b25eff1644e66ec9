/**
 * `import-clinicians noteworth` in the behaviour matrix, against the local noteworth provider
 * (fixtures/noteworth-server.ts) without faults. The provider answers its whole listing in one page,
 * so the slow run is a long listing written one clinician per batch (`--batch-size 1`): SIGINT lands
 * while batches are being committed. The malformed record is a provider entry without a name.
 */
import type { Knex } from 'knex';
import { NO_FAULTS, startNoteworthServer, type NoteworthProviderRecord } from '../../fixtures/noteworth-server.js';
import type { MatrixCase } from './case.js';

function roster(size: number): NoteworthProviderRecord[] {
  return Array.from({ length: size }, (_, i) => ({ name_given: `Given${i}`, name_family: `Family${i}`, title: i % 2 ? 'Dr.' : 'PA', clinic: `Clinic ${i % 7}` }));
}

const CLEAN = 30;
/** Enough one-clinician batches that a run lasts several seconds on Postgres. */
const SLOW = 1_500;

export const cliniciansCase: MatrixCase = {
  command: 'import-clinicians',
  async prepare() {
    const clean = await startNoteworthServer({ roster: roster(CLEAN), sampleSize: CLEAN, faults: NO_FAULTS, seed: 7 });
    const malformed = await startNoteworthServer({
      roster: roster(CLEAN),
      sampleSize: CLEAN,
      faults: NO_FAULTS,
      seed: 7,
      extraRecords: [{ name_family: 'Nameless', title: 'Dr.', clinic: 'Clinic 1' }],
    });
    const slow = await startNoteworthServer({ roster: roster(SLOW), sampleSize: SLOW, faults: NO_FAULTS, seed: 7 });
    const command = (url: string, batch: number) => ['import-clinicians', 'noteworth', '--base-url', url, '--batch-size', String(batch)];
    return {
      clean: command(clean.url, 8),
      cleanCounts: { read: CLEAN, written: CLEAN, rejected: 0 },
      malformed: command(malformed.url, 8),
      malformedReason: 'NAME_MISSING',
      slow: command(slow.url, 1),
      kept: async (knex: Knex) => Number((await knex('clinicians').count({ n: '*' }).first())!.n),
      lockName: 'import-clinicians:noteworth',
      close: async () => {
        await Promise.all([clean.close(), malformed.close(), slow.close()]);
      },
    };
  },
};
