// The string and number formats the CRD's schema uses, as the API server checks them: one
// definition for the validator compiled in tests (schema-compile.ts) and the one generated
// from it for the agent (machine-validator.generated.ts).
import formatsModule from 'ajv-formats/dist/formats.js';

const { fullFormats } = formatsModule;

export const SCHEMA_FORMATS = {
  'date-time': fullFormats['date-time'],
  int32: { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 },
  int64: { type: 'number', validate: (n: number) => Number.isInteger(n) },
} as const;
