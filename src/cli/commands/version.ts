import { readFileSync } from 'node:fs';

/** The package version, read once from package.json (two levels above src/ and dist/). */
export function umlmonVersion(): string {
  const url = new URL('../../../package.json', import.meta.url);
  return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
}

export async function main(_argv: string[]): Promise<number> {
  console.log(`umlmon ${umlmonVersion()} (node ${process.versions.node})`);
  return 0;
}
