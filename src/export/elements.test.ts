import { describe, expect, it } from 'vitest';
import { elementOfPath, elementTreatment, isDirectIdentifier } from './elements.js';

describe('FHIR elements of view paths', () => {
  it('reads the element a path reaches, without its functions', () => {
    expect(
      [
        'getResourceKey()',
        'subject.getReferenceKey(Patient).first()',
        'deceased.ofType(dateTime)',
        'address.first().line.first()',
        "telecom.where(system = 'phone').value.first()",
        'iif(numberOfSeries.exists(), numberOfSeries, series.count())',
        "(modality.code | series.modality.code).join(',')",
        'meta.lastUpdated',
        'performed.ofType(Period).start',
      ].map((p) => elementOfPath(p)),
    ).toEqual(['id', 'subject', 'deceasedDateTime', 'address.line', 'telecom.value', 'numberOfSeries', 'modality.code', 'meta.lastUpdated', 'performedPeriod.start']);
  });

  it('prefixes the forEach path, and %resource goes back to the resource', () => {
    expect(elementOfPath('system', 'telecom')).toBe('telecom.system');
    expect(elementOfPath('%resource.started', 'reasonCode.coding')).toBe('started');
    expect(elementOfPath('(%resource.issued | %resource.effective.ofType(dateTime)).first()', 'code.coding')).toBe('issued');
    expect(elementOfPath('value.ofType(CodeableConcept).coding')).toBe('valueCodeableConcept.coding');
    expect(elementOfPath('getReferenceKey(ImagingStudy)', '(derivedFrom | partOf).where(getReferenceKey(ImagingStudy).exists())')).toBe('derivedFrom');
  });

  it('requires the same treatment of an element in every resource view, and knows the direct identifiers', () => {
    expect(elementTreatment('ImagingStudy', 'started')).toBe('date_shift');
    expect(elementTreatment('Condition', 'onset')).toBe('date_shift');
    expect(elementTreatment('Procedure', 'performedPeriod.start')).toBe('date_shift');
    expect(elementTreatment('Condition', 'onsetDateTime')).toBe('date_shift');
    expect(elementTreatment('Patient', 'deceasedDateTime')).toBe('date_shift');
    expect(elementTreatment('Patient', 'deceasedBoolean')).toBeUndefined();
    expect(elementTreatment('Condition', 'onsetString')).toBeUndefined();
    expect(elementTreatment('Organization', 'meta.lastUpdated')).toBe('date_shift');
    expect(elementTreatment('Patient', 'birthDate')).toBe('birth_date');
    expect(elementTreatment('Patient', 'gender')).toBeUndefined();
    expect(['name.family', 'telecom.value', 'address.line', 'identifier.value', 'birthDate', 'id', 'photo', 'contact.name'].every((e) => isDirectIdentifier('Patient', e))).toBe(true);
    expect(['address.city', 'address.postalCode', 'gender', 'subject'].some((e) => isDirectIdentifier('Patient', e))).toBe(false);
    // An organization's name and telephone are not a person's; its id, identifiers and contact persons are identifying.
    expect(['name', 'telecom.value'].some((e) => isDirectIdentifier('Organization', e))).toBe(false);
    expect(['id', 'identifier.value', 'contact.telecom.value'].every((e) => isDirectIdentifier('Organization', e))).toBe(true);
  });
});

describe('every exportable column', () => {
  it('gets its FHIR element’s treatment in every table, view and computed source', async () => {
    const [{ loadSources }, { viewsDir }] = await Promise.all([import('./sources.js'), import('../fhir/views-dir.js')]);
    const { researchColumns } = await import('./view-tags.js');
    const { readdirSync, readFileSync } = await import('node:fs');
    const path = await import('node:path');
    const sources = await loadSources();
    // The elements of each view-derived table's columns, from every view that fills the table.
    const viewElements = new Map<string, Map<string, string[]>>();
    for (const file of readdirSync(viewsDir()).filter((f) => f.endsWith('.json'))) {
      const full = path.join(viewsDir(), file);
      const definition = JSON.parse(readFileSync(full, 'utf8')) as { name: string };
      const table = viewElements.get(definition.name) ?? new Map<string, string[]>();
      for (const [column, c] of researchColumns(definition, full)) table.set(column, [...(table.get(column) ?? []), ...c.elements]);
      viewElements.set(definition.name, table);
    }
    const byElement = new Map<string, Set<string>>();
    let walked = 0;
    for (const source of sources.values()) {
      const columns = source.treatmentsFor ? [source.treatmentsFor({ by: 'department' }), source.treatmentsFor({ by: 'clinician' })] : [source.columns];
      for (const treatments of columns) {
        for (const [column, treatment] of Object.entries(treatments)) {
          walked += 1;
          expect(treatment, `${source.name}.${column}`).toBeDefined();
          const elements = [...(viewElements.get(source.relation ?? source.name)?.get(column) ?? []), ...(source.elements?.[column] ? [source.elements[column]!] : [])];
          for (const qualified of elements) {
            const [resource, ...rest] = qualified.split('.');
            const element = rest.join('.');
            const required = elementTreatment(resource!, element);
            // A required treatment is applied, unless the column is dropped altogether.
            if (required && treatment !== 'drop') expect(`${source.name}.${column}: ${treatment}`).toBe(`${source.name}.${column}: ${required}`);
            if (isDirectIdentifier(resource!, element)) expect(`${source.name}.${column}: ${treatment}`).not.toBe(`${source.name}.${column}: keep`);
            const key = `${resource === '*' ? '' : resource}.${element}`;
            byElement.set(key, new Set([...(byElement.get(key) ?? []), `${treatment}`]));
          }
          // Shifted dates need to know whose they are.
          if (treatment === 'date_shift' || treatment === 'birth_date') expect(source.patientKey, `${source.name} has no patient key`).toBeDefined();
        }
      }
    }
    expect(walked).toBeGreaterThan(200);
    // One element, one treatment, across tables (the drop of a free-text copy aside).
    for (const [element, treatments] of byElement) {
      const kept = [...treatments].filter((t) => t !== 'drop');
      expect([element, new Set(kept).size <= 1]).toEqual([element, true]);
    }
    expect(byElement.get('ImagingStudy.started')).toEqual(new Set(['date_shift']));
    expect(byElement.get('Condition.onsetDateTime')).toEqual(new Set(['date_shift']));
    expect(byElement.get('Patient.birthDate')).toEqual(new Set(['birth_date']));
    // The clinician's name is pseudonymised in the appointments table and in missed-appointments by clinician.
    const missed = sources.get('missed-appointments')!;
    expect(missed.treatmentsFor!({ by: 'clinician' }).group).toBe(sources.get('appointments')!.columns.clinician);
    expect(sources.get('appointments')!.columns.clinician).toBe('pseudonym');
  });
});
