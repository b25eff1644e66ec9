import type { Command } from 'commander';
import type { CliState } from '../common.js';
import { registerConfig } from './config.js';
import { registerIngestFhir } from './ingest-fhir.js';
import { registerMigrate } from './migrate.js';
import { registerRuns } from './runs.js';
import { registerView } from './view.js';
import { registerIngestAppointments } from './ingest-appointments.js';
import { registerAppointments } from './appointments.js';

export type RegisterCommand = (program: Command, state: CliState) => void;

/** Every command, in the order `carepipe --help` lists them. */
export const commands: RegisterCommand[] = [
  registerMigrate,
  registerRuns,
  registerConfig,
  registerView,
  registerIngestFhir,
  registerIngestAppointments,
  registerAppointments,
];
