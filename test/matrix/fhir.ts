/**
 * ingest-fhir in the behaviour matrix: small Patient resources in ndjson files of db.tmp, a small
 * --batch-size so a run is several batches, one line that is not JSON for the malformed run.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import type { MatrixCase } from './case.js';

const patients = (n: number, prefix: string) =>
  Array.from({ length: n }, (_, i) => JSON.stringify({ resourceType: 'Patient', id: `${prefix}${i}`, gender: i % 2 ? 'female' : 'male' }));

export const fhirCase: MatrixCase = {
  command: 'ingest-fhir',
  async prepare(db) {
    const clean = path.join(db.tmp, 'clean.ndjson');
    const malformed = path.join(db.tmp, 'malformed.ndjson');
    const slow = path.join(db.tmp, 'slow.ndjson');
    writeFileSync(clean, `${patients(12, 'c').join('\n')}\n`);
    const lines = patients(6, 'm');
    lines.splice(3, 0, '{"resourceType": "Patient", "id": oops');
    writeFileSync(malformed, `${lines.join('\n')}\n`);
    writeFileSync(slow, `${patients(1500, 's').join('\n')}\n`);
    return {
      clean: ['ingest-fhir', clean, '--batch-size', '5'],
      cleanCounts: { read: 12, written: 12, rejected: 0 },
      malformed: ['ingest-fhir', malformed, '--batch-size', '5'],
      malformedReason: 'INVALID_JSON',
      slow: ['ingest-fhir', slow, '--batch-size', '5'],
      kept: async (knex: Knex) => Number((await knex('fhir_resources').count<{ n: string }[]>({ n: '*' }))[0]!.n),
      // Files: the command's name (a --server run adds the server, see src/cli/commands/ingest-fhir.ts).
      lockName: 'ingest-fhir',
      close: async () => undefined,
    };
  },
};
