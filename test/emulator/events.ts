// events.k8s.io/v1 Events share storage with core/v1 Events, as on a real API server: an event
// written through either API is read through both (field names converted as the API server's
// conversion functions do).
type Json = any;

const RENAMES: [events: string, core: string][] = [
  ['regarding', 'involvedObject'],
  ['note', 'message'],
  ['reportingController', 'reportingComponent'],
  ['deprecatedSource', 'source'],
  ['deprecatedFirstTimestamp', 'firstTimestamp'],
  ['deprecatedLastTimestamp', 'lastTimestamp'],
  ['deprecatedCount', 'count'],
];

export function eventsToCore(e: Json): Json {
  const out: Json = { ...e };
  for (const [ev, core] of RENAMES) {
    delete out[ev];
    if (e[ev] !== undefined) out[core] = e[ev];
  }
  return out;
}

export function coreToEvents(c: Json): Json {
  const out: Json = { ...c };
  for (const [ev, core] of RENAMES) {
    delete out[core];
    if (c[core] !== undefined) out[ev] = c[core];
  }
  return out;
}
