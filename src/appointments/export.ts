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
    date_of_birth: 'birth_date',
    postcode: 'postcode_outward',
    // a file path on the loading machine: says nothing of the patient, but nothing for research either
    source: 'drop',
    run_id: 'keep',
    loaded_at: 'keep',
    updated_at: 'keep',
  },
  patientKey: { column: 'nhs_number' },
  elements: { nhs_number: 'Patient.identifier', name: 'Patient.name', date_of_birth: 'Patient.birthDate', postcode: 'Patient.address.postalCode' },
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
    starts_at: 'date_shift',
    duration: 'keep',
    // a clinician's name identifies the clinician: pseudonymised like clinicians.clinician_key
    clinician: 'pseudonym',
    department: 'keep',
    postcode: 'postcode_outward',
    // a file path on the loading machine: says nothing of the patient, but nothing for research either
    source: 'drop',
    run_id: 'keep',
    loaded_at: 'keep',
    updated_at: 'keep',
  },
  patientKey: { column: 'patient' },
  elements: {
    id: 'Appointment.id',
    patient: 'Appointment.participant.actor',
    status: 'Appointment.status',
    starts_at: 'Appointment.start',
    duration: 'Appointment.minutesDuration',
  },
};

/** Hex digits of a clinician's pseudonym that name the clinician's line in a research chart. */
export const CHART_PSEUDONYM_DIGITS = 12;

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
  // Per clinician, the group is a clinician's name: pseudonymised like the appointments' clinician.
  treatmentsFor(params: ExportParams) {
    return { ...missedAppointmentsSource.columns, group: impactOptions(params).by === 'clinician' ? 'pseudonym' : 'keep' };
  },
  query(params: ExportParams) {
    return impactQuery(impactOptions(params));
  },
  async chart(knex: Knex, params: ExportParams, file: string, pseudonym?: (value: string) => string, output?: OutputFileOptions) {
    // The chart draws what the CSV holds: the same --by, --period, --from and --to.
    const options = impactOptions(params);
    const { sql, bindings } = impactQuery(options);
    const result = await knex.raw<{ rows: ImpactRow[] }>(sql, bindings as Knex.RawBinding[]);
    // Research exports pseudonymise clinicians: the chart names them by the first digits of the same pseudonym.
    const rows =
      pseudonym && options.by === 'clinician'
        ? result.rows.map((r) => ({ ...r, group: r.group === null ? null : pseudonym(r.group).slice(0, CHART_PSEUDONYM_DIGITS) }))
        : result.rows;
    const title = `Missed appointments by ${options.by}, per ${options.period}`;
    const panels = impactPanels(rows, { noGroup: `(no ${options.by})` });
    await writeChart(lineChartSvg(title, panels, options.period), file, output);
  },
};

export const appointmentSources: SourceDeclaration[] = [patientsSource, appointmentsSource, missedAppointmentsSource];
