// meta.k8s.io/v1 Table responses (what `kubectl get` asks for), with a CRD's
// additionalPrinterColumns rendered the way apiextensions' table convertor does.
import type { PrinterColumn, ResourceType } from './resources.ts';
import { evalJsonPath } from './jsonpath.ts';

/** k8s.io/apimachinery/pkg/util/duration.HumanDuration */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) { const s = seconds % 60; return s === 0 ? `${minutes}m` : `${minutes}m${s}s`; }
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.floor(seconds / 3600);
  if (hours < 8) { const m = minutes % 60; return m === 0 ? `${hours}h` : `${hours}h${m}m`; }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) { const h = hours % 24; return h === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${h}h`; }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) { const dy = Math.floor(hours / 24) % 365; return dy === 0 ? `${Math.floor(hours / 24 / 365)}y` : `${Math.floor(hours / 24 / 365)}y${dy}d`; }
  return `${Math.floor(hours / 24 / 365)}y`;
}

const NAME_COLUMN = {
  name: 'Name', type: 'string', format: 'name', priority: 0,
  description: 'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names',
};

function columnsOf(rt: ResourceType): PrinterColumn[] {
  return rt.crd?.printerColumns ?? [{ name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', description: 'CreationTimestamp is a timestamp representing the server time when this object was created.' }];
}

function cell(col: PrinterColumn, obj: unknown, now: number): unknown {
  const results = evalJsonPath(obj, col.jsonPath);
  if (results.length === 0 || results[0] === undefined || results[0] === null) return null;
  const v = results[0];
  switch (col.type) {
    case 'integer': return typeof v === 'number' ? Math.trunc(v) : null;
    case 'number': return typeof v === 'number' ? v : null;
    case 'boolean': return typeof v === 'boolean' ? v : null;
    case 'date': {
      if (typeof v !== 'string') return null;
      const t = Date.parse(v);
      return Number.isNaN(t) ? '<invalid>' : humanDuration(now - t);
    }
    default:
      // string columns print any JSON value the way kubectl's JSONPath printer does
      return typeof v === 'object' ? JSON.stringify(v) : String(v);
  }
}

export type IncludeObject = 'None' | 'Metadata' | 'Object';

function rowObject(obj: any, include: IncludeObject): unknown {
  if (include === 'None') return undefined;
  if (include === 'Object') return obj;
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: obj.metadata };
}

export function table(rt: ResourceType, objs: any[], listMeta: Record<string, unknown>, include: IncludeObject, withColumns = true): Record<string, unknown> {
  const cols = columnsOf(rt);
  const now = Date.now();
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: listMeta,
    columnDefinitions: withColumns
      ? [NAME_COLUMN, ...cols.map((c) => ({ name: c.name, type: c.type, format: c.format ?? '', description: c.description ?? '', priority: c.priority ?? 0 }))]
      : [],
    rows: objs.map((o) => {
      const row: Record<string, unknown> = { cells: [o.metadata.name, ...cols.map((c) => cell(c, o, now))] };
      const ro = rowObject(o, include);
      if (ro !== undefined) row.object = ro;
      return row;
    }),
  };
}
