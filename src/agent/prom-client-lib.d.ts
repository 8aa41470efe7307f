// Types for the prom-client files src/agent/metrics.ts imports one by one (why: metrics.ts).
// Each is the class its index re-exports, as module.exports.
declare module 'prom-client/lib/counter.js' {
  import type { Counter } from 'prom-client';
  const value: typeof Counter;
  export default value;
}
declare module 'prom-client/lib/gauge.js' {
  import type { Gauge } from 'prom-client';
  const value: typeof Gauge;
  export default value;
}
declare module 'prom-client/lib/histogram.js' {
  import type { Histogram } from 'prom-client';
  const value: typeof Histogram;
  export default value;
}
declare module 'prom-client/lib/registry.js' {
  import type { Registry } from 'prom-client';
  const value: typeof Registry;
  export default value;
}
