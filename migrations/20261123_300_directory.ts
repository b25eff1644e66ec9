import type { Knex } from 'knex';

/**
 * The healthcare-worker directory: organizations keyed by FINESS, workers keyed by RPPS, and the
 * many-to-many link between them (a worker at two hospitals, a hospital with many workers) carrying
 * the profession at that organization. Rows are created once; later imports only mark them seen.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('organizations', (t) => {
    t.text('finess').primary();
    t.text('name').notNullable();
    t.text('finess_justice');
    t.text('activity_segment_code');
    t.text('activity_segment_name');
    t.text('building_number');
    t.text('city');
    t.text('postcode');
    t.boolean('bimedoc_client');
    t.timestamp('first_seen_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_seen_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    // the run that created the row, and the last run that saw it in the directory
    t.bigInteger('run_id').references('runs.id').onDelete('SET NULL');
    t.bigInteger('last_seen_run_id').references('runs.id').onDelete('SET NULL');
  });
  await knex.raw(`alter table organizations add constraint organizations_finess_format check (finess ~ '^([0-9]{2}|2[AB])[0-9]{7}$')`);
  await knex.raw(`alter table organizations add constraint organizations_name_present check (btrim(name) <> '')`);

  await knex.schema.createTable('health_care_workers', (t) => {
    t.text('rpps_number').primary();
    t.text('last_name').notNullable();
    t.text('first_name').notNullable();
    t.text('gender');
    t.text('email');
    t.text('phone_number');
    t.text('profession_code');
    t.text('profession_name').notNullable();
    t.timestamp('first_seen_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_seen_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.bigInteger('run_id').references('runs.id').onDelete('SET NULL');
    t.bigInteger('last_seen_run_id').references('runs.id').onDelete('SET NULL');
  });
  await knex.raw(`alter table health_care_workers add constraint health_care_workers_rpps_format check (rpps_number ~ '^[0-9]{11}$')`);
  await knex.raw(
    `alter table health_care_workers add constraint health_care_workers_names_present check (btrim(last_name) <> '' and btrim(first_name) <> '' and btrim(profession_name) <> '')`,
  );

  await knex.schema.createTable('organization_workers', (t) => {
    t.text('finess').notNullable().references('organizations.finess').onDelete('CASCADE');
    t.text('rpps_number').notNullable().references('health_care_workers.rpps_number').onDelete('CASCADE');
    t.text('profession_code');
    t.text('profession_name').notNullable();
    // the directory's own id of the hit the link came from
    t.text('directory_id');
    t.timestamp('first_seen_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_seen_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.bigInteger('run_id').references('runs.id').onDelete('SET NULL');
    t.bigInteger('last_seen_run_id').references('runs.id').onDelete('SET NULL');
    t.primary(['finess', 'rpps_number']);
    t.index(['rpps_number']);
  });

  // For export and dashboards: every organization with its workers (an organization without workers
  // still has its row, with empty worker columns).
  await knex.raw(`
    create view organizations_workers as
    select o.finess,
           o.name as organization_name,
           o.finess_justice,
           o.activity_segment_code,
           o.activity_segment_name,
           o.building_number,
           o.city,
           o.postcode,
           o.bimedoc_client,
           w.rpps_number,
           w.last_name,
           w.first_name,
           w.gender,
           w.email,
           w.phone_number,
           ow.profession_code,
           ow.profession_name,
           greatest(o.last_seen_at, ow.last_seen_at) as last_seen_at
      from organizations o
      left join organization_workers ow on ow.finess = o.finess
      left join health_care_workers w on w.rpps_number = ow.rpps_number`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('drop view if exists organizations_workers');
  await knex.schema.dropTable('organization_workers');
  await knex.schema.dropTable('health_care_workers');
  await knex.schema.dropTable('organizations');
}
