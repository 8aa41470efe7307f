// The UML machine id (umid): a short, stable name for a machine on its node. It names the
// machine's state directory and sockets, whose paths must stay under 108 bytes whatever the
// namespace and name, so it comes from metadata.uid rather than from the name.
import { sha256 } from '../sha256.ts';

export const UMID_LENGTH = 10;
export const UMID_PATTERN = /^[a-z0-9]{8,12}$/;

/** 10 characters of [a-z0-9] from a SHA-256 of the uid: the same uid always gives the same umid. */
export function umidFor(uid: string): string {
  if (uid === '') throw new Error('cannot derive a umid from an empty metadata.uid');
  const digest = new DataView(sha256(uid).buffer);
  // 64 bits of the hash in base 36 is 13 characters at most; left-pad so the length is fixed.
  const base36 = digest.getBigUint64(0).toString(36).padStart(13, '0');
  return base36.slice(0, UMID_LENGTH);
}
