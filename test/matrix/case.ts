/**
 * One ingest command as the behaviour matrix (test/pipeline-matrix.e2e.test.ts) drives it. Each domain
 * gives one MatrixCase (test/matrix/<domain>.ts); the matrix runs the same checks over all four.
 */
import type { Knex } from 'knex';
import type { RejectReason } from '../../src/pipeline/reasons.js';
import type { TestDatabase } from '../helpers/db.js';

export interface MatrixCase {
  /** The command as the ledger names it, e.g. `ingest-fhir`. */
  command: string;
  /** Make the inputs (files in `db.tmp`, fixture servers on 127.0.0.1) for one test database. */
  prepare(db: TestDatabase): Promise<MatrixRuns>;
}

export interface MatrixRuns {
  /**
   * Arguments after `carepipe` for a clean input of more than one batch (pass a small `--batch-size`
   * where the command has one). The matrix adds the database flags and `--json`.
   */
  clean: string[];
  /** What a run of `clean` on an empty database counts (the dry run must count exactly this). */
  cleanCounts: { read: number; written: number; rejected: number };
  /** The clean input with one malformed record among the good ones. */
  malformed: string[];
  /** The code from the closed list (src/pipeline/reasons.ts) the malformed record is rejected with. */
  malformedReason: RejectReason;
  /**
   * An input that takes several seconds and commits a batch at a time (e.g. `--batch-size 1` over a
   * few hundred records, or a fixture server that answers slowly): SIGINT lands after its first batch.
   */
  slow: string[];
  /** Rows of the command's tables (a count), to see "nothing kept" and "committed batches kept". */
  kept(knex: Knex): Promise<number>;
  /** The lock name the command takes (its name, or `name:target`), to hold it and expect exit 3. */
  lockName: string;
  /** Extra environment for the child (a fixture server's URL, a key). */
  env?: Record<string, string>;
  /** Stop fixture servers. */
  close(): Promise<void>;
}
