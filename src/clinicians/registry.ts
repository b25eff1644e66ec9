/**
 * The registered backends, and the check that a backend really is one. The same check runs when a
 * backend is registered and when one is loaded at run time from `--backend-module FILE`, so a module
 * missing a part is refused with a message that names the part, before anything is fetched.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CarepipeError } from '../errors.js';
import { fhirPractitioner } from './backends/fhir-practitioner.js';
import { noteworth } from './backends/noteworth.js';
import type { ClinicianBackend } from './types.js';

const FUNCTIONS = ['siteUrl', 'authenticate', 'authHeader', 'fetchClinicians', 'mapToClinician'] as const;

/** What `candidate` lacks to be a ClinicianBackend, one phrase per part (empty when it is one). */
export function backendProblems(candidate: unknown): string[] {
  if (candidate === null || typeof candidate !== 'object') return ['the module exports no backend object'];
  const b = candidate as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof b.name !== 'string' || !/^[a-z][a-z0-9-]*$/.test(b.name)) problems.push('name (lower-case letters, digits and -)');
  if (typeof b.description !== 'string' || b.description.trim() === '') problems.push('description (one line for --help)');
  if (typeof b.completeListing !== 'boolean') problems.push('completeListing (boolean: does one listing hold every clinician?)');
  if (!Array.isArray(b.settings)) problems.push('settings (array of the settings it needs)');
  else {
    b.settings.forEach((s: unknown, i) => {
      const setting = s as Record<string, unknown> | null;
      if (!setting || typeof setting.name !== 'string' || typeof setting.description !== 'string') {
        problems.push(`settings[${i}] (needs name and description)`);
      }
    });
  }
  if (b.tokenRejectedStatuses !== undefined && !(Array.isArray(b.tokenRejectedStatuses) && b.tokenRejectedStatuses.every((s) => Number.isInteger(s)))) {
    problems.push('tokenRejectedStatuses (array of HTTP statuses)');
  }
  for (const fn of FUNCTIONS) if (typeof b[fn] !== 'function') problems.push(`${fn}() (function)`);
  return problems;
}

/** Throws BACKEND_INVALID naming every missing part. */
export function assertBackend(candidate: unknown, where: string): asserts candidate is ClinicianBackend {
  const problems = backendProblems(candidate);
  if (problems.length > 0) {
    const name = typeof (candidate as { name?: unknown } | null)?.name === 'string' ? ` "${(candidate as { name: string }).name}"` : '';
    throw new CarepipeError('BACKEND_INVALID', `backend${name} from ${where} is not a clinician backend: missing ${problems.join(', ')}`, {
      missing: problems,
    });
  }
}

export class BackendRegistry {
  private readonly backends = new Map<string, ClinicianBackend>();

  /** Add a backend; refused (BACKEND_INVALID) when it does not satisfy the interface or its name is taken. */
  register(backend: unknown, where = 'registration'): this {
    assertBackend(backend, where);
    if (this.backends.has(backend.name)) {
      throw new CarepipeError('BACKEND_INVALID', `a backend named "${backend.name}" is already registered`);
    }
    this.backends.set(backend.name, backend);
    return this;
  }

  get(name: string): ClinicianBackend {
    const backend = this.backends.get(name);
    if (!backend) {
      throw new CarepipeError('BACKEND_UNKNOWN', `unknown backend "${name}"; registered: ${this.names().join(', ')} (or load one with --backend-module FILE)`);
    }
    return backend;
  }

  names(): string[] {
    return [...this.backends.keys()];
  }

  list(): ClinicianBackend[] {
    return [...this.backends.values()];
  }
}

/**
 * Load a backend from a file: its default export, or an export named `backend`. Checked like a
 * registered one; a file that cannot be imported is a usage error naming the file.
 */
export async function loadBackendModule(file: string, cwd: string): Promise<ClinicianBackend> {
  const resolved = path.resolve(cwd, file);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(resolved).href)) as Record<string, unknown>;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ERR_MODULE_NOT_FOUND' ? 'file not found' : (err as Error).message.split('\n')[0];
    throw new CarepipeError('BACKEND_INVALID', `cannot load backend module ${resolved}: ${reason}`, { file: resolved });
  }
  const candidate = module.default ?? module.backend;
  assertBackend(candidate, resolved);
  return candidate;
}

/** The backends carepipe ships, registered (and so checked) once. */
export function builtinRegistry(): BackendRegistry {
  return new BackendRegistry().register(noteworth, 'src/clinicians/backends/noteworth.ts').register(fhirPractitioner, 'src/clinicians/backends/fhir-practitioner.ts');
}
