/**
 * `carepipe history` for people: one header per change (time, operation, the run behind it, the
 * database user), then the fields that changed, + added, - removed, ~ changed. The data side (what
 * changed, from the stored images or derived) is src/db/history.ts and src/fhir/derived-history.ts.
 */
import { diffRow, type HistoryOperation, type RowChange } from '../db/history.js';

const OPERATION_NAMES: Record<HistoryOperation, string> = { I: 'insert', U: 'update', D: 'delete' };

function iso(d: Date | null): string {
  return d ? d.toISOString().replace(/\.\d+Z$/, 'Z') : '';
}

/** The command as typed: the ledger's arguments may or may not start with the command's name. */
function commandLine(command: string, args: string[]): string {
  return (args[0] === command ? args : [command, ...args]).join(' ');
}

/** The changes of one row as text for people: one header per change, then its fields, + - ~. */
export function formatChanges(changes: RowChange[], options: { color?: boolean } = {}): string {
  const paint = (code: number, text: string) => (options.color ? `\u001b[${code}m${text}\u001b[0m` : text);
  const show = (v: unknown) => JSON.stringify(v);
  const lines: string[] = [];
  for (const change of changes) {
    const run = change.run_id === null
      ? 'outside any carepipe run'
      : `run ${change.run_id}${change.run_command ? ` ${commandLine(change.run_command, change.run_arguments ?? [])}` : ''}${change.run_user ? ` by ${change.run_user}` : ''}${change.run_started_at ? ` at ${iso(change.run_started_at)}` : ''}`;
    lines.push(paint(1, `${iso(change.changed_at)}  ${OPERATION_NAMES[change.operation]}  ${run} (db user ${change.db_user ?? 'unknown'})`));
    for (const field of diffRow(change.before, change.after)) {
      if (!('before' in field)) lines.push(paint(32, `  + ${field.path}: ${show(field.after)}`));
      else if (!('after' in field)) lines.push(paint(31, `  - ${field.path}: ${show(field.before)}`));
      else lines.push(paint(33, `  ~ ${field.path}: ${show(field.before)} → ${show(field.after)}`));
    }
  }
  return lines.join('\n');
}
