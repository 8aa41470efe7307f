// Placeholder until the 'run' command lands; replaced by its owner.
export async function main(_argv: string[]): Promise<number> {
  console.error('umlmon run: not built yet');
  return 1;
}
