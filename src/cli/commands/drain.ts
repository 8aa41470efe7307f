// Placeholder until the 'drain' command lands; replaced by its owner.
export async function main(_argv: string[]): Promise<number> {
  console.error('umlmon drain: not built yet');
  return 1;
}
