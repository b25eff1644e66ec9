/**
 * Bundle reference resolution for the FHIR file reader: the `urn:uuid:` fullUrls of a Bundle and the
 * `Type/id` each stands for, every `reference` of the Bundle's resources rewritten to it, and the
 * entries that point forward (to a fullUrl not seen yet in a streamed Bundle) set aside on disk and read
 * again once the whole Bundle is known, so memory holds only the fullUrl map.
 */
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { isLosslessNumber, stringify as stringifyLossless } from 'lossless-json';
import { readLines } from '../../io/ndjson.js';
import { PRIVATE_FILE_MODE } from '../../io/private-mode.js';
import { makePrivateTempDir, removePrivateTempDir } from '../../io/private-temp.js';
import { isObject, type Json } from './validate.js';

/** A fullUrl that stands for a server-assigned id: `urn:uuid:` and the uuid (group 1). */
export const URN_UUID = /^urn:uuid:([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$/;

/**
 * The `urn:uuid:` fullUrls of a Bundle and the `Type/id` each stands for. It lives as long as the
 * Bundle is read, so it is kept small: keyed by the uuid, the value only the type name (one shared
 * string per type) when the id is the uuid itself, as it nearly always is.
 */
export class FullUrls {
  private readonly byUuid = new Map<string, string>();
  private readonly types = new Map<string, string>();

  /** Records one Bundle entry's fullUrl, when it is a urn:uuid and the entry holds a resource. */
  add(entry: unknown): void {
    if (!isObject(entry) || typeof entry.fullUrl !== 'string' || !entry.fullUrl.startsWith('urn:uuid:')) return;
    const resource = entry.resource;
    if (!isObject(resource) || typeof resource.resourceType !== 'string') return;
    const uuid = entry.fullUrl.slice('urn:uuid:'.length);
    const id = typeof resource.id === 'string' ? resource.id : URN_UUID.test(entry.fullUrl) ? uuid : undefined;
    if (!id) return;
    let type = this.types.get(resource.resourceType);
    if (type === undefined) {
      type = copyString(resource.resourceType);
      this.types.set(type, type);
    }
    this.byUuid.set(copyString(uuid), id === uuid ? type : copyString(`${type}/${id}`));
  }

  /** `Type/id` of a `urn:uuid:…` reference, or undefined when no entry declares it. */
  resolve(reference: string): string | undefined {
    const uuid = reference.slice('urn:uuid:'.length);
    const target = this.byUuid.get(uuid);
    if (target === undefined) return undefined;
    return target.includes('/') ? target : `${target}/${uuid}`;
  }
}

/**
 * A string that shares no memory with the one given. Strings cut from a streamed chunk keep the whole
 * chunk alive; the fullUrl map lives as long as the Bundle, so it must not hold every chunk of it.
 */
export function copyString(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}

/** Rewrites every `reference: "urn:uuid:…"` found in refs; collects the paths of those not found. */
export function resolveReferences(node: unknown, refs: FullUrls | undefined, at: string, unresolved: string[]): void {
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      const v = node[i];
      if (typeof v === 'object' && v !== null) resolveReferences(v, refs, `${at}[${i}]`, unresolved);
    }
    return;
  }
  if (isLosslessNumber(node)) return;
  const obj = node as Json;
  for (const key in obj) {
    const v = obj[key];
    if (key === 'reference' && typeof v === 'string') {
      if (v.startsWith('urn:uuid:')) {
        const resolved = refs?.resolve(v);
        if (resolved) obj[key] = resolved;
        else unresolved.push(at ? `${at}.reference` : 'reference');
      }
    } else if (typeof v === 'object' && v !== null) {
      resolveReferences(v, refs, at ? `${at}.${key}` : key, unresolved);
    }
  }
}


/** Bundle entries set aside on disk, as ndjson of `{index, entry}`; the file exists only once written to. */
export class Spill {
  private dir: string | undefined;
  private file: string | undefined;
  private out: WriteStream | undefined;

  constructor(private readonly lossless: boolean) {}

  async write(index: number, entry: unknown): Promise<void> {
    if (!this.out) {
      this.dir = await makePrivateTempDir('spill');
      this.file = path.join(this.dir, 'entries.ndjson');
      this.out = createWriteStream(this.file, { flags: 'wx', mode: PRIVATE_FILE_MODE });
    }
    const line = `${this.lossless ? stringifyLossless({ index, entry }) : JSON.stringify({ index, entry })}\n`;
    if (!this.out.write(line)) await once(this.out, 'drain');
  }

  async *entries(parse: (text: string) => unknown): AsyncGenerator<{ index: number; entry: unknown }> {
    if (!this.out || !this.file) return;
    const out = this.out;
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    for await (const { text } of readLines(createReadStream(this.file))) {
      const { index, entry } = parse(text) as { index: unknown; entry: unknown };
      yield { index: Number(index), entry };
    }
  }

  async remove(): Promise<void> {
    this.out?.destroy();
    if (this.dir) await removePrivateTempDir(this.dir);
  }
}
