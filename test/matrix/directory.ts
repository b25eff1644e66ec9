/**
 * `directory-lookup import --all` in the behaviour matrix: the directory fake on 127.0.0.1, paged with
 * a small `--size` so that a run is several batches (a page is a batch); a second fake answers each page
 * slowly for the SIGINT check; the malformed run reads a city with one hit whose rpps_number is short.
 */
import type { Knex } from 'knex';
import { generateDirectory, type SampleHit } from '../../fixtures/directory-data.js';
import { startDirectoryServer } from '../../fixtures/directory-server.js';
import type { MatrixCase } from './case.js';

/** A PARIS hit whose rpps_number is 10 digits: INVALID_RPPS. */
function shortRpps(like: SampleHit): SampleHit {
  return { id: 'matrix-short-rpps', fields: { ...like.fields, rpps_number: '1000000000', building_number: 'matrix' } };
}

export const directoryCase: MatrixCase = {
  command: 'directory-lookup import',
  async prepare() {
    const hits = generateDirectory();
    const paris = hits.find((h) => h.fields.city === 'PARIS')!;
    const server = await startDirectoryServer({ hits, extraHits: [shortRpps(paris)] });
    // 30 pages of 2, a quarter of a second each.
    const slow = await startDirectoryServer({ hits: hits.slice(0, 60), pageDelayMs: 250 });
    const lyon = hits.filter((h) => h.fields.city === 'LYON').length;
    return {
      clean: ['directory-lookup', 'import', '--city', 'LYON', '--all', '--size', '10'],
      // A fresh database: every entry creates at least its link.
      cleanCounts: { read: lyon, written: lyon, rejected: 0 },
      malformed: ['directory-lookup', 'import', '--city', 'PARIS', '--all', '--size', '10'],
      malformedReason: 'INVALID_RPPS',
      slow: ['directory-lookup', 'import', '--all', '--size', '2', '--base-url', slow.url],
      kept: async (knex: Knex) => Number((await knex('organization_workers').count({ n: '*' }).first())!.n),
      lockName: `directory-lookup import:${new URL(server.url).host}`,
      env: { DIRECTORY_BASE_URL: server.url },
      close: async () => {
        await server.close();
        await slow.close();
      },
    };
  },
};
