/**
 * Where the shipped ViewDefinitions are: the package's top-level `views/` folder, found from src/ (tests,
 * tsx) or dist/src/ (the built CLI) by walking up to package.json. The one place that knows it; ingest-fhir
 * (views.ts) and export-csv (src/export/sources.ts) both ask here. No other import, so it loads nothing else.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package's top-level `views/` folder. */
export function viewsDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i += 1) {
    if (existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'views');
    dir = path.dirname(dir);
  }
  return path.resolve('views');
}
