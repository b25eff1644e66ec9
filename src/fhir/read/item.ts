/**
 * What a FHIR reader yields, whatever the source (files, stdin, a FHIR server's search pages, a Bulk
 * Data export): resources, deletions, records that could not be read, and checkpoints. Readers know
 * nothing of Postgres; the ingest pipeline turns these into batches.
 */
import type { FhirResource } from 'fhir/r4.js';
import type { RejectReason } from '../../pipeline/reasons.js';

export interface Origin {
  /** File path or URL. */
  source: string;
  /** 1-based line in an ndjson file. */
  line?: number;
  /** 0-based entry index in a Bundle. */
  entry?: number;
}

export type FhirItem =
  /**
   * `text`: the resource's JSON exactly as it was read, when the reader has it and changed nothing in
   * the parsed value (an ndjson line): stored as it came, decimals such as 1.50 with all their digits.
   */
  | (Origin & { kind: 'resource'; resource: FhirResource & { id: string }; text?: string })
  /** A Bundle entry with request.method = DELETE, or a server saying a resource is gone. */
  | (Origin & { kind: 'delete'; resourceType: string; id: string })
  /** A record that could not be read as a resource: it goes to rejects with this reason. */
  | (Origin & { kind: 'invalid'; reasonCode: RejectReason; message: string; field?: string; raw?: string })
  /**
   * A point where the source can resume (the end of a search page, an export file). The pipeline
   * commits what came before it, and stores `state` in the same transaction.
   */
  | (Origin & { kind: 'checkpoint'; key: string; state: unknown });
