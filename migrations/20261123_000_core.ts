import type { Knex } from 'knex';

/** The run ledger and the rejects table that every command writes to. */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('runs', (t) => {
    t.bigIncrements('id').primary();
    t.text('command').notNullable();
    t.text('target');
    t.jsonb('arguments').notNullable().defaultTo('[]');
    t.text('os_user').notNullable();
    t.text('host').notNullable();
    t.integer('pid').notNullable();
    t.timestamp('started_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('finished_at', { useTz: true });
    // running | succeeded | partial (finished with rejects) | failed | abandoned (process died)
    t.text('status').notNullable().defaultTo('running');
    t.integer('exit_code');
    t.bigInteger('read_count').notNullable().defaultTo(0);
    t.bigInteger('written_count').notNullable().defaultTo(0);
    t.bigInteger('unchanged_count').notNullable().defaultTo(0);
    t.bigInteger('rejected_count').notNullable().defaultTo(0);
    t.jsonb('details').notNullable().defaultTo('{}');
    t.text('error');
    t.index(['started_at']);
    t.index(['command', 'started_at']);
  });

  await knex.schema.createTable('rejects', (t) => {
    t.bigIncrements('id').primary();
    t.bigInteger('run_id').notNullable().references('runs.id').onDelete('CASCADE');
    t.text('command').notNullable();
    // where the record came from: a file path or a URL
    t.text('source').notNullable();
    t.integer('line');
    t.integer('entry');
    t.text('record_key');
    t.text('field');
    t.text('reason_code').notNullable();
    t.text('message').notNullable();
    // the record as it was given to us, verbatim
    t.text('raw');
    // a reject that a later run may retry (for example an appointment waiting for its patient)
    t.boolean('retryable').notNullable().defaultTo(false);
    t.bigInteger('resolved_run_id').references('runs.id').onDelete('SET NULL');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.index(['run_id']);
    t.index(['reason_code']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('rejects');
  await knex.schema.dropTable('runs');
}
