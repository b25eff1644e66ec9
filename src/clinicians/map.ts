/**
 * The map stage of `import-clinicians`: the backend's own pure mapping (`mapToClinician`, provider
 * fields to ours), its answer checked, keyed by the clinician key and given the record to keep in
 * `rejects.raw`. A rejected record that still names a clinician goes on to the writer as `seen`, so
 * that a complete listing does not take that clinician as gone; a reject without a key stops the
 * inactive marking of the run (src/clinicians/write.ts).
 */
import { CarepipeError } from '../errors.js';
import { isRejectReason } from '../pipeline/reasons.js';
import type { Location, MapResult, RejectInfo } from '../pipeline/run.js';
import type { Clinician, ClinicianBackend } from './types.js';

/** What the writer gets for one record. */
export type ClinicianItem =
  | { clinician: Clinician }
  /** A rejected record that names clinician `seen`: its reject is written, and the clinician counts as listed. */
  | { seen: string; reject: RejectInfo };

/** The mapper of a backend: pure, as the backend's mapping is. */
export function mapWith(backend: ClinicianBackend): (raw: unknown, at: Location) => MapResult<ClinicianItem> {
  return (raw) => {
    const mapped = backend.mapToClinician(raw) as unknown;
    if (isClinician(mapped)) return { ok: true, value: { clinician: mapped.value }, key: mapped.value.key, raw };
    if (!isReject(mapped)) {
      throw new CarepipeError(
        'BACKEND_INVALID',
        `backend "${backend.name}": mapToClinician() must answer { ok: true, value, key } or { ok: false, reason, message }, with a reason from the closed list (src/pipeline/reasons.ts)`,
      );
    }
    const { ok: _ok, ...reject } = mapped;
    const kept: RejectInfo = { ...reject, raw: reject.raw ?? raw };
    if (kept.key) return { ok: true, value: { seen: kept.key, reject: kept }, key: kept.key, raw: kept.raw };
    return { ok: false, ...kept };
  };
}

function isClinician(mapped: unknown): mapped is { ok: true; value: Clinician } {
  const m = mapped as { ok?: unknown; value?: { key?: unknown } } | null;
  return m?.ok === true && typeof m.value?.key === 'string' && m.value.key !== '';
}

function isReject(mapped: unknown): mapped is { ok: false } & RejectInfo {
  const m = mapped as { ok?: unknown; reason?: unknown; message?: unknown } | null;
  return m?.ok === false && typeof m.reason === 'string' && isRejectReason(m.reason) && typeof m.message === 'string';
}
