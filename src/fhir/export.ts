/**
 * export-csv declarations for the diagnosis-code tables: `codings` (its view columns' tags, plus the
 * generated `system_name` and the bookkeeping columns the views do not declare) and the `diseases` view.
 */
import type { SourceDeclaration } from '../export/treatments.js';
import { viewsDir } from '../export/sources.js';
import { viewSources } from '../export/view-tags.js';
import { diseasesSource } from './codings.js';

function codingsSource(): SourceDeclaration[] {
  const fromViews = viewSources(viewsDir()).find((s) => s.name === 'codings');
  if (!fromViews) return [];
  return [
    {
      ...fromViews,
      description: 'one row per coding of Condition, Observation, Procedure, DiagnosticReport and ImagingStudy, with the code system name',
      columns: { ...fromViews.columns, system_name: 'keep', _resource_type: 'keep', _resource_id: 'pseudonym' },
    },
  ];
}

export const exportSources: SourceDeclaration[] = [...codingsSource(), diseasesSource];
