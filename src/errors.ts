/**
 * One family of typed errors. Every error carepipe raises on purpose is a CarepipeError with a code
 * from the closed list below; the code decides the exit status. Anything else is a bug (exit 70).
 */

/** Process exit codes, documented in the README. */
export const ExitCode = {
  OK: 0,
  REJECTS: 1,
  USAGE: 2,
  LOCKED: 3,
  UNREACHABLE: 4,
  INTERNAL: 70,
  /** Stopped by SIGINT/SIGTERM after committing what it had: run again to finish (128 + SIGINT). */
  INTERRUPTED: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The closed list of error codes, each mapped to the exit code it produces. */
export const ErrorCodes = {
  // usage and configuration: the user must change something (exit 2)
  USAGE: ExitCode.USAGE,
  CONFIG_INVALID: ExitCode.USAGE,
  SCHEMA_BEHIND: ExitCode.USAGE,
  VIEW_INVALID: ExitCode.USAGE,
  INPUT_NOT_FOUND: ExitCode.USAGE,
  BACKEND_INVALID: ExitCode.USAGE,
  BACKEND_UNKNOWN: ExitCode.USAGE,
  PSEUDONYM_KEY_MISSING: ExitCode.USAGE,
  PROFILE_UNDECLARED_COLUMN: ExitCode.USAGE,
  SOURCE_UNKNOWN: ExitCode.USAGE,
  RECORD_INVALID: ExitCode.USAGE,
  /** No embedded database where a read-only command looked: it would not create an empty one. */
  DATABASE_NOT_FOUND: ExitCode.USAGE,
  /** Postgres refused a statement given to `carepipe sql` (syntax, unknown table, read-only, …). */
  SQL_ERROR: ExitCode.USAGE,
  // concurrency (exit 3)
  LOCKED: ExitCode.LOCKED,
  LEASE_LOST: ExitCode.LOCKED,
  // a source or the database could not be reached (exit 4)
  DB_UNREACHABLE: ExitCode.UNREACHABLE,
  SOURCE_UNREACHABLE: ExitCode.UNREACHABLE,
  SOURCE_FAILED: ExitCode.UNREACHABLE,
  RETRIES_EXHAUSTED: ExitCode.UNREACHABLE,
  // stopped by a signal (exit 130)
  INTERRUPTED: ExitCode.INTERRUPTED,
  // a bug (exit 70)
  INTERNAL: ExitCode.INTERNAL,
} as const;
export type ErrorCode = keyof typeof ErrorCodes;

/** Where a problem is: enough for a user to find the record without us printing its contents. */
export interface ErrorContext {
  file?: string;
  line?: number;
  entry?: number;
  record?: string;
  field?: string;
  url?: string;
  [key: string]: unknown;
}

export class CarepipeError extends Error {
  readonly code: ErrorCode;
  readonly context: ErrorContext;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CarepipeError';
    this.code = code;
    this.context = context;
  }

  get exitCode(): ExitCode {
    return ErrorCodes[this.code];
  }
}

export function isCarepipeError(err: unknown): err is CarepipeError {
  return err instanceof CarepipeError;
}

/** `file:line entry N field X` prefix for a message, from whatever context is known. */
export function formatLocation(ctx: ErrorContext): string {
  const parts: string[] = [];
  if (ctx.file) parts.push(ctx.line !== undefined ? `${ctx.file}:${ctx.line}` : ctx.file);
  else if (ctx.url) parts.push(ctx.url);
  if (ctx.entry !== undefined) parts.push(`entry ${ctx.entry}`);
  if (ctx.record) parts.push(`record ${ctx.record}`);
  if (ctx.field) parts.push(`field ${ctx.field}`);
  return parts.join(' ');
}
