// Kubernetes quantities as byte counts: the one place spec.memory's text becomes a number.
// Follows resource.Quantity's syntax (k8s.io/apimachinery/pkg/api/resource): a decimal number,
// then a binary suffix (Ki..Ei), a decimal suffix (n u m k M G T P E) or an exponent (e3, E6).
// Fractions of a byte round up, as Quantity.Value() does.

const BINARY_SUFFIX: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL_SUFFIX: Record<string, number> = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };

const QUANTITY = /^\+?(?<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:(?<binary>[KMGTPE]i)|[eE](?<exponent>[+-]?[0-9]+)|(?<decimal>[numkMGTPE]?))$/;

/**
 * Bytes in a quantity such as "128Mi", "1G", "1.5Gi", "5e8" or "1048576". Throws on anything
 * else (negative numbers, unknown suffixes, "128MB", whitespace), naming the accepted forms.
 */
export function parseQuantity(quantity: string): number {
  const match = QUANTITY.exec(quantity);
  const groups = match?.groups;
  if (!groups || groups.number === undefined) {
    throw new Error(
      `"${quantity}" is not a quantity of bytes; write a number with an optional suffix: Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024), k, M, G, T, P, E (powers of 1000), e.g. 128Mi`,
    );
  }
  const number = Number(groups.number);
  let factor: number;
  if (groups.binary !== undefined) factor = BINARY_SUFFIX[groups.binary] ?? 1;
  else if (groups.exponent !== undefined) factor = 10 ** Number(groups.exponent);
  else factor = DECIMAL_SUFFIX[groups.decimal ?? ''] ?? 1;
  const bytes = Math.ceil(roundToNanos(number * factor));
  if (!Number.isFinite(bytes)) throw new Error(`"${quantity}" is too large to be a quantity of bytes`);
  return bytes;
}

/** 1.1 * 1000 is 1100.0000000000002 in floating point: round before ceil so it stays 1100. */
function roundToNanos(value: number): number {
  return Math.round(value * 1e9) / 1e9;
}

const BINARY_UNITS: readonly [string, number][] = [
  ['Ei', 2 ** 60],
  ['Pi', 2 ** 50],
  ['Ti', 2 ** 40],
  ['Gi', 2 ** 30],
  ['Mi', 2 ** 20],
  ['Ki', 2 ** 10],
];

/**
 * Bytes as the shortest exact binary quantity ("64Mi", "1536Mi", "1Gi"); a count that is not a
 * whole number of KiB stays a plain number ("1000"). parseQuantity(formatBytes(n)) === n.
 */
export function formatBytes(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`${bytes} is not a whole, non-negative number of bytes`);
  for (const [unit, size] of BINARY_UNITS) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}
