// Quantities of bytes (spec.memory) and the umid derived from metadata.uid.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, parseQuantity } from '../../src/api/quantity.ts';
import { UMID_PATTERN, umidFor } from '../../src/api/umid.ts';

describe('parseQuantity', () => {
  const cases: [string, number][] = [
    ['0', 0],
    ['1048576', 1048576],
    ['64Mi', 64 * 2 ** 20],
    ['1Ki', 1024],
    ['1.5Gi', 1.5 * 2 ** 30],
    ['2Ti', 2 * 2 ** 40],
    ['1Pi', 2 ** 50],
    ['1Ei', 2 ** 60],
    ['1k', 1000],
    ['128M', 128e6],
    ['1G', 1e9],
    ['1T', 1e12],
    ['1P', 1e15],
    ['1E', 1e18],
    ['1.1k', 1100],
    ['5e8', 5e8],
    ['5E3', 5000],
    ['.5Ki', 512],
    ['+64Mi', 64 * 2 ** 20],
    ['1500m', 2], // 1.5 bytes rounds up, as Quantity.Value() does
  ];
  for (const [text, bytes] of cases) it(`${text} is ${bytes} bytes`, () => assert.equal(parseQuantity(text), bytes));

  for (const garbage of ['', ' 64Mi', '64Mi ', '64MB', '64mi', '64 Mi', '-64Mi', 'Mi', '0x10', '1e', '1.2.3', 'NaN', 'Infinity', '64Kib', '1e999']) {
    it(`refuses ${JSON.stringify(garbage)}`, () => assert.throws(() => parseQuantity(garbage), /quantity of bytes/));
  }
});

describe('formatBytes', () => {
  it('writes the shortest exact binary quantity', () => {
    assert.equal(formatBytes(64 * 2 ** 20), '64Mi');
    assert.equal(formatBytes(1536 * 2 ** 20), '1536Mi');
    assert.equal(formatBytes(2 ** 30), '1Gi');
    assert.equal(formatBytes(3 * 2 ** 10), '3Ki');
    assert.equal(formatBytes(1000), '1000');
    assert.equal(formatBytes(0), '0');
  });
  it('round-trips through parseQuantity', () => {
    for (const n of [0, 1, 999, 1024, 40 * 2 ** 20, 123456789, 2 ** 50]) assert.equal(parseQuantity(formatBytes(n)), n);
  });
  it('refuses what is not a byte count', () => {
    for (const n of [-1, 1.5, Number.NaN, Infinity]) assert.throws(() => formatBytes(n));
  });
});

describe('umidFor', () => {
  it('is short, [a-z0-9], stable and different per uid', () => {
    const uid = '6a0f3c2e-1b7d-4e0a-9c55-0d6f1e2a3b4c';
    const umid = umidFor(uid);
    assert.match(umid, UMID_PATTERN);
    assert.match(umid, /^[a-z0-9]{10}$/);
    assert.equal(umidFor(uid), umid);
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) seen.add(umidFor(`uid-${i}`));
    assert.equal(seen.size, 2000);
  });
  it('refuses an empty uid', () => assert.throws(() => umidFor(''), /empty metadata.uid/));
});
