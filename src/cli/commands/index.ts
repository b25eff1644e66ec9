import type { Command } from 'commander';
import type { CliState } from '../common.js';
import { registerAppointments } from './appointments.js';
import { registerConfig } from './config.js';
import { registerDb } from './db.js';
import { registerDirectoryLookup } from './directory-lookup.js';
import { registerExportCsv } from './export-csv.js';
import { registerHistory } from './history.js';
import { registerImportClinicians } from './import-clinicians.js';
import { registerIngestAppointments } from './ingest-appointments.js';
import { registerIngestFhir } from './ingest-fhir.js';
import { registerMigrate } from './migrate.js';
import { registerRuns } from './runs.js';
import { registerSql } from './sql.js';
import { registerView } from './view.js';
import { registerViews } from './views.js';

export type RegisterCommand = (program: Command, state: CliState) => void;

/** Every command, in the order `carepipe --help` lists them. */
export const commands: RegisterCommand[] = [
  registerMigrate,
  registerRuns,
  registerConfig,
  registerIngestFhir,
  registerView,
  registerViews,
  registerImportClinicians,
  registerDirectoryLookup,
  registerIngestAppointments,
  registerAppointments,
  registerExportCsv,
  registerHistory,
  registerSql,
  registerDb,
];
