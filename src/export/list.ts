/** `carepipe export-csv --list`: the declared sources, their columns and research treatments. */
import { loadSources } from './sources.js';

export interface SourceListing {
  name: string;
  description: string;
  computed: boolean;
  lastUpdatedColumn: string | null;
  columns: { name: string; research: string }[];
}

export async function listSources(options: { viewsDir?: string } = {}): Promise<{ human: string; json: SourceListing[] }> {
  const sources = [...(await loadSources(options)).values()].sort((a, b) => a.name.localeCompare(b.name));
  const json = sources.map((s) => ({
    name: s.name,
    description: s.description,
    computed: typeof s.query === 'function',
    lastUpdatedColumn: s.lastUpdatedColumn ?? null,
    columns: Object.entries(s.columns).map(([name, research]) => ({ name, research })),
  }));
  const human = json
    .map((s) => {
      const columns = s.columns.map((c) => `${c.name} (${c.research})`).join(', ');
      return `${s.name}${s.computed ? ' [computed]' : ''}\n  ${s.description}\n  columns: ${columns}`;
    })
    .join('\n\n');
  return { human: `${human}\n`, json };
}
