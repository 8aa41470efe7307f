// The node's measured loops-per-jiffy, so `lpj=auto` in the default arguments can skip the
// delay-loop calibration on every boot after the first (uml-facts.md: fast-boot arguments).
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from './atomic-file.ts';

export function lpjFile(sharedDir: string): string {
  return join(sharedDir, 'lpj');
}

export function readMeasuredLpj(sharedDir: string): number | undefined {
  try {
    const value = Number(readFileSync(lpjFile(sharedDir), 'utf8').trim());
    return Number.isInteger(value) && value > 0 ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Keeps the first calibrated value: later boots run with lpj= and calibrate nothing. */
export function recordMeasuredLpj(sharedDir: string, value: number): void {
  if (readMeasuredLpj(sharedDir) !== undefined) return;
  writeFileAtomic(lpjFile(sharedDir), `${value}\n`);
}
