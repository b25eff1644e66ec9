/**
 * What `export-csv` may read of the appointments domain, and how the research profile treats each
 * column; plus the computed `missed-appointments` source (its SQL and its chart).
 */
import type { Knex } from 'knex';
import type { ExportParams, SourceDeclaration } from '../export/treatments.js';
import type { OutputFileOptions } from '../io/output-file.js';
import { impactPanels, lineChartSvg, writeChart } from './chart.js';
import { impactOptions, impactQuery, type ImpactRow } from './impact.js';

export const patientsSource: SourceDeclaration = {
  name: 'patients',
  description: 'patients of the appointment system (key nhs_number)',
  lastUpdatedColumn: 'updated_at',
  columns: {
    nhs_number: 'pseudonym',
    name: 'drop',
    date_of_birth: 'year',
    postcode: 'postcode_outward',
    // a file path on the loading machine: says nothing of the patient, but nothing for research either
    source: 'drop',
    run_id: 'keep',
    loaded_at: 'keep',
    updated_at: 'keep',
  },
};

export const appointmentsSource: SourceDeclaration = {
  name: 'appointments',
  description: 'appointments (duration in minutes; status attended|active|cancelled|missed)',
  lastUpdatedColumn: 'updated_at',
  columns: {
    // the source system's id links back to the booking: pseudonymised like any resource id
    id: 'pseudonym',
    patient: 'pseudonym',
    status: 'keep',
    starts_at: 'keep',
    duration: 'keep',
    clinician: 'keep',
    department: 'keep',
    postcode: 'postcode_outward',
    // a file path on the loading machine: says nothing of the patient, but nothing for research either
    source: 'drop',
    run_id: 'keep',
    loaded_at: 'keep',
    updated_at: 'keep',
  },
};

export const missedAppointmentsSource: SourceDeclaration = {
  name: 'missed-appointments',
  description:
    'per clinician or department and week or month: appointments concluded, missed, missed rate, clinician minutes lost (--by --period --from --to --chart)',
  columns: {
    group: 'keep',
    period_start: 'keep',
    appointments: 'keep',
    missed: 'keep',
    missed_rate: 'keep',
    clinician_minutes_lost: 'keep',
  },
  query(params: ExportParams) {
    return impactQuery(impactOptions(params));
  },
  async chart(knex: Knex, params: ExportParams, file: string, output?: OutputFileOptions) {
    // The chart is always per department; --period, --from and --to still apply.
    const options = { ...impactOptions(params), by: 'department' as const };
    const { sql, bindings } = impactQuery(options);
    const result = await knex.raw<{ rows: ImpactRow[] }>(sql, bindings as Knex.RawBinding[]);
    const title = `Missed appointments by department, per ${options.period}`;
    await writeChart(lineChartSvg(title, impactPanels(result.rows)), file, output);
  },
};

export const appointmentSources: SourceDeclaration[] = [patientsSource, appointmentsSource, missedAppointmentsSource];
