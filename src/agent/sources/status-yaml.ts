// YAML for the status files the directory source writes, without the yaml library: its
// stringify costs 2.7 ms a status under node --lite-mode (0.6 ms with V8's optimizing compiler),
// and a drain of 100 guests writes a few hundred of them while the guests' kernels need the same
// two cores. A status is JSON-shaped (objects, arrays, strings, numbers, booleans), so block
// style with every scalar as JSON is enough: a JSON string is a valid YAML double-quoted
// scalar (YAML 1.2 takes JSON's escapes). Strings that no YAML reader could take for anything
// else are written plain, for people reading the file. Pure.

/** Plain scalars that stay strings for YAML 1.1 and 1.2 readers alike. */
const PLAIN = /^[A-Za-z][A-Za-z0-9._/-]*$/;
const KEYWORDS = /^(y|yes|n|no|true|false|on|off|null|nan|inf)$/i;
/** Keys written plain; any other is quoted. */
const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

function scalar(value: unknown): string {
  if (typeof value === 'string') return PLAIN.test(value) && !KEYWORDS.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'null';
  if (typeof value === 'boolean') return String(value);
  return 'null';
}

function key(k: string): string {
  return PLAIN_KEY.test(k) && !KEYWORDS.test(k) ? k : JSON.stringify(k);
}

function isBlock(value: unknown): value is object {
  if (Array.isArray(value)) return value.length > 0;
  return value !== null && typeof value === 'object' && Object.keys(value).some((k) => (value as Record<string, unknown>)[k] !== undefined);
}

function emit(value: unknown, indent: string, out: string[]): void {
  if (Array.isArray(value)) {
    for (const item of value) {
      if (isBlock(item) && !Array.isArray(item)) {
        // "- " then the object's first key on the same line, the rest under it.
        const lines: string[] = [];
        emit(item, `${indent}  `, lines);
        out.push(`${indent}- ${lines[0]!.slice(indent.length + 2)}`, ...lines.slice(1));
      } else if (isBlock(item)) {
        out.push(`${indent}-`);
        emit(item, `${indent}  `, out);
      } else {
        out.push(`${indent}- ${empty(item) ?? scalar(item)}`);
      }
    }
    return;
  }
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v === undefined) continue;
    if (isBlock(v)) {
      out.push(`${indent}${key(k)}:`);
      emit(v, Array.isArray(v) ? indent : `${indent}  `, out);
    } else {
      out.push(`${indent}${key(k)}: ${empty(v) ?? scalar(v)}`);
    }
  }
}

function empty(value: unknown): string | undefined {
  if (Array.isArray(value)) return value.length === 0 ? '[]' : undefined;
  if (value !== null && typeof value === 'object') return '{}';
  return undefined;
}

/** A JSON-shaped object as a YAML document (block style), ending in a newline. */
export function statusYaml(value: Record<string, unknown>): string {
  const out: string[] = [];
  emit(value, '', out);
  return `${out.join('\n')}\n`;
}
