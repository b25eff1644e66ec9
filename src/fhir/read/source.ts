/**
 * The read stage of ingest-fhir on the engine (src/pipeline/run.ts): whichever source the command names
 * (files and stdin, a FHIR server's search pages or Bulk Data export, or the files of a shared work
 * queue), its FhirItems become the engine's ReadItems. A checkpoint carries the handler that stores it
 * (fhir_files_done, fhir_sync_state, work_items) in the transaction of the batch it closes.
 */
import type { Knex } from 'knex';
import type { FhirResource } from 'fhir/r4.js';
import type { Location, ReadItem } from '../../pipeline/run.js';
import type { FhirItem } from './item.js';

/** What the mapper gets: a resource to store, or a resource a source says is gone. */
export type FhirRecord =
  /** `text`: the resource's JSON as it was read, when the reader changed nothing in it (see FhirItem). */
  | { kind: 'resource'; resource: FhirResource & { id: string }; text?: string }
  | { kind: 'delete'; resourceType: string; id: string };

/** Stores a checkpoint's state inside the transaction of the batch it closes. */
export type CheckpointHandler = (trx: Knex.Transaction, checkpoint: { key: string; state: unknown }, runId: number | null) => Promise<void>;

export interface FhirCheckpoint {
  key: string;
  state: unknown;
  /** Writes it, in the batch's transaction. */
  save: CheckpointHandler;
  /** Told once the batch holding it has committed. */
  committed?: () => void;
}

export type FhirReadItem = ReadItem<FhirRecord, FhirCheckpoint>;

/** The count bucket of records that could not be read as a resource at all. */
export const UNREADABLE = '(unreadable)';

/** A reader's FhirItems as the engine's ReadItems; its checkpoints are stored by `save`. */
export async function* engineItems(
  items: AsyncIterable<FhirItem>,
  save: CheckpointHandler,
  committed?: (checkpoint: { key: string; state: unknown }) => void,
): AsyncGenerator<FhirReadItem> {
  for await (const item of items) {
    const at: Location = { source: item.source };
    if (item.line !== undefined) at.line = item.line;
    if (item.entry !== undefined) at.entry = item.entry;
    switch (item.kind) {
      case 'resource':
        yield { kind: 'record', record: { kind: 'resource', resource: item.resource, text: item.text }, at };
        break;
      case 'delete':
        yield { kind: 'record', record: { kind: 'delete', resourceType: item.resourceType, id: item.id }, at };
        break;
      case 'invalid':
        yield {
          kind: 'invalid',
          at,
          reject: { reason: item.reasonCode, message: item.message, field: item.field, raw: item.raw, group: UNREADABLE },
        };
        break;
      case 'checkpoint': {
        const checkpoint = { key: item.key, state: item.state };
        yield {
          kind: 'checkpoint',
          state: { ...checkpoint, save, ...(committed ? { committed: () => committed(checkpoint) } : {}) },
        };
        break;
      }
    }
  }
}
