// src/sha256.ts against node:crypto.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { sha256, sha256Hex } from '../../src/sha256.ts';

const reference = (input: string | Uint8Array): string => createHash('sha256').update(input).digest('hex');

describe('sha256', () => {
  it('gives the FIPS 180-4 test vectors', () => {
    assert.equal(sha256Hex(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(sha256Hex('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'), '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
  });

  it('matches node:crypto on every length across the block and padding boundaries', () => {
    for (let n = 0; n <= 200; n++) {
      const bytes = randomBytes(n);
      assert.equal(sha256Hex(bytes), reference(bytes), `${n} bytes`);
    }
    const big = randomBytes(100_000);
    assert.equal(sha256Hex(big), reference(big));
  });

  it('hashes strings as UTF-8, as node:crypto does', () => {
    for (const s of ['umlmon', 'ümläut', '日本語のテキスト', '🙂 emoji', 'a\0b', `${'x'.repeat(63)}é`, 'default/web#0']) {
      assert.equal(sha256Hex(s), reference(s), s);
    }
    for (let i = 0; i < 200; i++) {
      const s = String.fromCodePoint(...Array.from({ length: i % 90 }, () => Math.floor(Math.random() * 0xd7ff)));
      assert.equal(sha256Hex(s), reference(s));
    }
  });

  it('gives the digest as 32 bytes', () => {
    assert.deepEqual(Buffer.from(sha256('abc')), createHash('sha256').update('abc').digest());
  });

  it('gives the same digest again for a remembered input, in a copy the caller may change', () => {
    const first = sha256('default/web');
    first.fill(0);
    assert.equal(sha256Hex('default/web'), reference('default/web'));
    const long = 'y'.repeat(300);
    assert.equal(sha256Hex(long), reference(long), 'inputs too long to remember are hashed each time');
  });
});
