// Placeholder until the 'check' command lands; replaced by its owner.
export async function main(_argv: string[]): Promise<number> {
  console.error('umlmon check: not built yet');
  return 1;
}
