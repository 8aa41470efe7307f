// The agent's generated validators (why ahead of time: src/api/schema-compile.ts):
// - src/api/machine-validator.generated.ts, a UmlMachine's, from the CRD;
// - src/api/machine-schema.generated.ts, the CRD's schema that the agent prunes and defaults
//   with (why: src/api/schema.ts);
// - src/agent/config-validator.generated.ts, the config file's, from src/agent/config.ts.
//   node hack/generate-validator.ts      writes them all (unit tests fail while one is stale)
import { writeFileSync } from 'node:fs';
import { CONFIG_SCHEMA, CONFIG_SCHEMA_OPTIONS } from '../src/agent/config.ts';
import { generatedSchemaSource, generatedValidatorSource, standaloneValidatorSource } from '../src/api/schema-compile.ts';

export const GENERATED_VALIDATORS: readonly { file: URL; source: () => string }[] = [
  { file: new URL('../src/api/machine-validator.generated.ts', import.meta.url), source: generatedValidatorSource },
  { file: new URL('../src/api/machine-schema.generated.ts', import.meta.url), source: generatedSchemaSource },
  {
    file: new URL('../src/agent/config-validator.generated.ts', import.meta.url),
    source: () => standaloneValidatorSource(CONFIG_SCHEMA, CONFIG_SCHEMA_OPTIONS, 'CONFIG_SCHEMA in src/agent/config.ts'),
  },
];

if (import.meta.main) {
  for (const { file, source } of GENERATED_VALIDATORS) {
    writeFileSync(file, source());
    console.log(`wrote ${file.pathname}`);
  }
}
