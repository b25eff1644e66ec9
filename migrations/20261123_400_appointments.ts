import type { Knex } from 'knex';

/**
 * Patients and appointments from the hospital appointment system. `appointments.duration` is stored
 * in whole minutes. A trigger keeps a cancelled appointment cancelled whatever writes to the table.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('patients', (t) => {
    // 10 digits, check digit verified, spaces and dashes removed
    t.text('nhs_number').primary();
    // exactly as given, Unicode NFC
    t.text('name').notNullable();
    t.date('date_of_birth');
    // canonical UK form, e.g. 'N6 2FA'
    t.text('postcode');
    t.text('source').notNullable();
    t.bigInteger('run_id').references('runs.id').onDelete('SET NULL');
    t.timestamp('loaded_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw(`alter table patients add constraint patients_nhs_number_shape check (nhs_number ~ '^[0-9]{10}$')`);

  await knex.schema.createTable('appointments', (t) => {
    t.uuid('id').primary();
    t.text('patient').notNullable().references('patients.nhs_number');
    t.text('status').notNullable();
    t.timestamp('starts_at', { useTz: true }).notNullable();
    t.integer('duration').notNullable().comment('minutes');
    t.text('clinician');
    t.text('department');
    t.text('postcode');
    t.text('source').notNullable();
    t.bigInteger('run_id').references('runs.id').onDelete('SET NULL');
    t.timestamp('loaded_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.index(['patient']);
    t.index(['starts_at']);
    t.index(['status']);
  });
  await knex.raw(`comment on column appointments.duration is 'length of the appointment in minutes'`);
  await knex.raw(`alter table appointments add constraint appointments_status_known check (status in ('attended','active','cancelled','missed'))`);
  await knex.raw(`alter table appointments add constraint appointments_duration_positive check (duration > 0)`);
  // The writer refuses a reinstatement with a reason; this is the backstop for any other writer.
  await knex.raw(`
    create function appointments_cancelled_is_final() returns trigger language plpgsql as $$
    begin
      if old.status = 'cancelled' and new.status <> 'cancelled' then
        raise exception 'APPOINTMENT_CANCELLED_IS_FINAL: appointment % is cancelled', old.id using errcode = 'check_violation';
      end if;
      return new;
    end $$`);
  await knex.raw(`
    create trigger appointments_cancelled_is_final before update of status on appointments
    for each row execute function appointments_cancelled_is_final()`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('appointments');
  await knex.raw('drop function if exists appointments_cancelled_is_final()');
  await knex.schema.dropTable('patients');
}
