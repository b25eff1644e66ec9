/**
 * export-csv declarations for `codings` and `image_labels` (their view columns' tags,
 * plus the bookkeeping columns the views do not declare and codings' generated `system_name`) and the
 * `diseases` view.
 */
import type { SourceDeclaration } from '../export/treatments.js';
import { viewsDir } from './views-dir.js';
import { viewSources } from '../export/view-tags.js';
import { diseasesSource } from './codings.js';

/** The view-derived declaration of `table` with the columns its views do not declare. */
function withBookkeeping(table: string, extra: SourceDeclaration['columns'] = {}, description?: string): SourceDeclaration[] {
  const fromViews = viewSources(viewsDir()).find((s) => s.name === table);
  if (!fromViews) return [];
  return [
    {
      ...fromViews,
      description: description ?? fromViews.description,
      columns: { ...fromViews.columns, ...extra, _resource_type: 'keep', _resource_id: 'pseudonym', _row_index: 'keep' },
    },
  ];
}

export const exportSources: SourceDeclaration[] = [
  ...withBookkeeping(
    'codings',
    { system_name: 'keep' },
    'one row per coding of Condition, Observation, Procedure, DiagnosticReport and ImagingStudy, with the code system name',
  ),
  ...withBookkeeping('image_labels', {}, 'labels of imaging studies, from Observations pointing at a study and from its reason and procedure codes'),
  diseasesSource,
];
