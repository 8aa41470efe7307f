// Node built-ins taken as module objects, not through an ESM `import`. An ESM import of a
// built-in builds its namespace by reading every export, and a few exports are lazy getters
// that load far more than we use: node:http's WebSocket, MessageEvent and friends load undici
// (and http2 and tls with it), node:util's and node:process's load their own. Measured on
// Node 24 with --lite-mode, one module imported into an empty process: node:http +10.8 MiB
// RSS by `import`, +2.1 MiB here; node:util and node:process +1.4 MiB each by `import`, none
// here. process.getBuiltinModule returns the module object and runs no getter. The agent's
// whole RSS budget is 60 MiB (issue "Fast and lean"); a unit test keeps these imports out of
// src/ (test/unit/footprint.test.ts).
export const http = process.getBuiltinModule('node:http');
export const util = process.getBuiltinModule('node:util');
