/**
 * A small, realistic FHIR data set for server tests: the first resources of a few types from the shared
 * Synthea Bulk Data export, written as ndjson with meta.lastUpdated and versionId set (as a server
 * stores them), so that the fake server and the file ingest see byte-identical resources.
 */
import { createReadStream, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { SHARED } from './cli.js';

export const SYNTHEA_BULK = path.join(SHARED, 'fhir', 'synthea-bulk');

export interface SampleData {
  dir: string;
  /** Resources per type, in file order. */
  byType: Record<string, Record<string, unknown>[]>;
  total: number;
}

/** Write `counts` resources per type to `dir/{Type}.ndjson`, stamped 2024-01-01T00:00:00Z + 1 s each. */
export async function writeSampleData(dir: string, counts: Record<string, number>): Promise<SampleData> {
  mkdirSync(dir, { recursive: true });
  const byType: SampleData['byType'] = {};
  let clock = Date.parse('2024-01-01T00:00:00.000Z');
  let total = 0;
  for (const [type, count] of Object.entries(counts)) {
    const resources: Record<string, unknown>[] = [];
    const lines = createInterface({ input: createReadStream(path.join(SYNTHEA_BULK, `${type}.ndjson`)), crlfDelay: Infinity });
    for await (const line of lines) {
      if (resources.length >= count) break;
      const resource = JSON.parse(line) as Record<string, unknown> & { meta?: Record<string, unknown> };
      resource.meta = { ...resource.meta, versionId: '1', lastUpdated: new Date((clock += 1000)).toISOString() };
      resources.push(resource);
    }
    lines.close();
    writeFileSync(path.join(dir, `${type}.ndjson`), resources.map((r) => JSON.stringify(r) + '\n').join(''));
    byType[type] = resources;
    total += resources.length;
  }
  return { dir, byType, total };
}
