// The command line of the commands that load the agent's config (src/cli/config-args.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommandLine } from '../../src/cli/config-args.ts';

describe('parseCommandLine', () => {
  it("splits the config's flags from the command's own and the positionals", () => {
    const r = parseCommandLine(['-f', '/etc/c.yaml', '--state-dir', '/s', '--kernel', 'a=/k1', '--kernel', 'b=/k2', '-v', 'x.yaml', '--timeout', '30s'], {
      extraOptions: { timeout: { type: 'string' }, 'read-only': { type: 'boolean' } }, allowPositionals: true,
    });
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.flags, { config: '/etc/c.yaml', 'state-dir': '/s', kernel: ['a=/k1', 'b=/k2'], verbose: true });
    assert.deepEqual(r.extra, { timeout: '30s', 'read-only': undefined });
    assert.deepEqual(r.positionals, ['x.yaml']);
  });

  it('refuses an unknown flag, a flag without its value and positionals where none are taken, saying which', () => {
    const unknown = parseCommandLine(['--no-such-flag']);
    assert.ok(!unknown.ok && /no-such-flag/.test(unknown.errors[0]!), JSON.stringify(unknown));
    const missing = parseCommandLine(['--state-dir']);
    assert.ok(!missing.ok && /state-dir/.test(missing.errors[0]!), JSON.stringify(missing));
    const positional = parseCommandLine(['a.yaml']);
    assert.ok(!positional.ok && /a\.yaml/.test(positional.errors[0]!), JSON.stringify(positional));
  });
});
