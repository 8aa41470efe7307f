// Label and field selectors, parsed and matched as k8s.io/apimachinery does.
import { badRequest } from './status.ts';

export interface Requirement { key: string; op: 'in' | 'notin' | 'exists' | '!' | '=' | '!='; values: string[] }

function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) { parts.push(cur); cur = ''; } else cur += ch;
  }
  if (cur.trim()) parts.push(cur);
  return parts.map((p) => p.trim()).filter(Boolean);
}

export function parseLabelSelector(sel: string): Requirement[] {
  const reqs: Requirement[] = [];
  for (const part of splitTopLevel(sel)) {
    let m: RegExpExecArray | null;
    if ((m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part))) {
      reqs.push({ key: m[1]!, op: m[2] as 'in' | 'notin', values: m[3]!.split(',').map((v) => v.trim()).filter(Boolean) });
    } else if ((m = /^!\s*([\w./-]+)$/.exec(part))) {
      reqs.push({ key: m[1]!, op: '!', values: [] });
    } else if ((m = /^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$/.exec(part))) {
      reqs.push({ key: m[1]!, op: m[2] === '!=' ? '!=' : '=', values: [m[3]!] });
    } else if ((m = /^([\w./-]+)$/.exec(part))) {
      reqs.push({ key: m[1]!, op: 'exists', values: [] });
    } else {
      throw badRequest(`unable to parse requirement: found '${part}', expected: identifier`);
    }
  }
  return reqs;
}

export function matchLabels(reqs: Requirement[], labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const has = Object.hasOwn(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case 'exists': return has;
      case '!': return !has;
      case '=': return has && v === r.values[0];
      case '!=': return !has || v !== r.values[0];
      case 'in': return has && r.values.includes(v!);
      case 'notin': return !has || !r.values.includes(v!);
    }
  });
}

export interface FieldRequirement { field: string; op: '=' | '!='; value: string }

export function parseFieldSelector(sel: string): FieldRequirement[] {
  const out: FieldRequirement[] = [];
  for (const part of splitTopLevel(sel)) {
    const m = /^([^=!]+?)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (!m) throw badRequest(`invalid selector: '${sel}'; can't understand '${part}'`);
    out.push({ field: m[1]!.trim(), op: m[2] === '!=' ? '!=' : '=', value: m[3]!.trim() });
  }
  return out;
}

export function matchFields(reqs: FieldRequirement[], fields: Record<string, string>): boolean {
  return reqs.every((r) => {
    const v = fields[r.field] ?? '';
    return r.op === '=' ? v === r.value : v !== r.value;
  });
}
