// The validator for whole UmlMachine objects: ajv's code for the CRD's schema, generated ahead
// of time (machine-validator.generated.ts; why: schema-compile.ts).
import generatedValidator from './machine-validator.generated.ts';
import type { SchemaValidator } from './schema.ts';

export function machineSchemaValidator(): SchemaValidator {
  return generatedValidator as unknown as SchemaValidator;
}
