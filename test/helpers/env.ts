import os from 'node:os';

/** The Postgres server the suite runs against: TEST_DATABASE_URL, or the one on this machine (trust auth). */
export function testDatabaseUrl(): string {
  return process.env.TEST_DATABASE_URL ?? `postgres://${os.userInfo().username}@127.0.0.1:5432/test`;
}
