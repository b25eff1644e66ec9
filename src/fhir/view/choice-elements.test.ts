import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { CHOICE_ELEMENTS } from './fhirpath/paths.js';

// The `fhirpath` package (a dev dependency, for the benchmark) carries the R4 model: every choice path.
const r4 = createRequire(import.meta.url)('fhirpath/fhir-context/r4') as { choiceTypePaths: Record<string, string[]> };

describe('CHOICE_ELEMENTS', () => {
  it('holds the name of every R4 choice element, and no other', () => {
    const names = new Set(Object.keys(r4.choiceTypePaths).map((p) => p.slice(p.lastIndexOf('.') + 1)));
    expect([...CHOICE_ELEMENTS].sort()).toEqual([...names].sort());
  });
});
