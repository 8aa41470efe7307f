// The simple JSONPath subset CRDs use for printer columns and selectable fields
// (.a.b, .a[0].b, .a['x.y'], .a[?(@.type=="Ready")].status).
type Step = { kind: 'field'; name: string } | { kind: 'index'; index: number } | { kind: 'filter'; field: string; value: string } | { kind: 'all' };

export function parseJsonPath(path: string): Step[] {
  let p = path.trim();
  if (p.startsWith('{') && p.endsWith('}')) p = p.slice(1, -1);
  if (p.startsWith('$')) p = p.slice(1);
  const steps: Step[] = [];
  let i = 0;
  while (i < p.length) {
    const c = p[i];
    if (c === '.') {
      i++;
      let j = i;
      while (j < p.length && p[j] !== '.' && p[j] !== '[') j++;
      if (j > i) steps.push({ kind: 'field', name: p.slice(i, j) });
      i = j;
    } else if (c === '[') {
      const end = p.indexOf(']', i);
      if (end < 0) throw new Error(`unterminated [ in ${path}`);
      const inner = p.slice(i + 1, end).trim();
      const filter = /^\?\(@\.([\w.-]+)\s*==\s*["']([^"']*)["']\)$/.exec(inner);
      if (filter) steps.push({ kind: 'filter', field: filter[1]!, value: filter[2]! });
      else if (inner === '*') steps.push({ kind: 'all' });
      else if (/^-?\d+$/.test(inner)) steps.push({ kind: 'index', index: Number(inner) });
      else steps.push({ kind: 'field', name: inner.replace(/^['"]|['"]$/g, '') });
      i = end + 1;
    } else {
      let j = i;
      while (j < p.length && p[j] !== '.' && p[j] !== '[') j++;
      steps.push({ kind: 'field', name: p.slice(i, j) });
      i = j;
    }
  }
  return steps;
}

/** All values the path reaches (empty when it reaches nothing). */
export function evalJsonPath(obj: unknown, path: string): unknown[] {
  let cur: unknown[] = [obj];
  for (const step of parseJsonPath(path)) {
    const next: unknown[] = [];
    for (const v of cur) {
      if (v === null || v === undefined) continue;
      if (step.kind === 'field') {
        if (typeof v === 'object' && !Array.isArray(v) && step.name in (v as object)) next.push((v as Record<string, unknown>)[step.name]);
      } else if (step.kind === 'index') {
        if (Array.isArray(v)) {
          const item = v[step.index < 0 ? v.length + step.index : step.index];
          if (item !== undefined) next.push(item);
        }
      } else if (step.kind === 'all') {
        if (Array.isArray(v)) next.push(...v);
        else if (typeof v === 'object') next.push(...Object.values(v as object));
      } else if (Array.isArray(v)) {
        for (const item of v) {
          const got = evalJsonPath(item, `.${step.field}`)[0];
          if (got !== undefined && String(got) === step.value) next.push(item);
        }
      }
    }
    cur = next;
  }
  return cur;
}
