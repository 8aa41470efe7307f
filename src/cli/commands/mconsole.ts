// Placeholder until the 'mconsole' command lands; replaced by its owner.
export async function main(_argv: string[]): Promise<number> {
  console.error('umlmon mconsole: not built yet');
  return 1;
}
