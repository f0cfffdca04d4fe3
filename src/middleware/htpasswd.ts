/**
 * Password hashes as htpasswd writes them, verified the way Apache and Traefik (goauth) do: bcrypt
 * (`$2y$`, `$2a$`, `$2b$`; bcryptjs, asynchronous so a check of cost 10 — tens of milliseconds — does not hold
 * the worker's event loop in one piece), SHA-1 (`{SHA}` + base64) and Apache's MD5 (`$apr1$`).
 *
 * apr1 is written here rather than taken from npm: the package for it (apache-md5) hashes the password with
 * Node's 'ascii' encoding and counts its length in UTF-16 units, so a non-ASCII password never matches what
 * htpasswd (which hashes the UTF-8 bytes) wrote. The algorithm is FreeBSD's MD5-crypt with the magic
 * "$apr1$": 1000 rounds of MD5 over the password, salt and previous digest, then a custom base64.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcryptjs';

const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function md5(...parts: Buffer[]): Buffer {
  const hash = createHash('md5');
  for (const p of parts) hash.update(p);
  return hash.digest();
}

function to64(value: number, count: number): string {
  let out = '';
  for (let i = 0; i < count; i++) {
    out += ITOA64[value & 0x3f];
    value >>>= 6;
  }
  return out;
}

/** The `$apr1$salt$hash` of `password` with `salt` (at most 8 characters are used, as in Apache). */
export function apr1(password: string, salt: string): string {
  const magic = Buffer.from('$apr1$');
  const pw = Buffer.from(password, 'utf8');
  const s = Buffer.from(salt.slice(0, 8), 'utf8');
  const alternate = md5(pw, s, pw);
  const parts: Buffer[] = [pw, magic, s];
  for (let left = pw.length; left > 0; left -= 16) parts.push(alternate.subarray(0, Math.min(16, left)));
  for (let i = pw.length; i > 0; i >>>= 1) parts.push(i & 1 ? Buffer.from([0]) : pw.subarray(0, 1));
  let final = md5(...parts);
  for (let i = 0; i < 1000; i++) {
    const round: Buffer[] = [i & 1 ? pw : final];
    if (i % 3) round.push(s);
    if (i % 7) round.push(pw);
    round.push(i & 1 ? final : pw);
    final = md5(...round);
  }
  const f = final;
  const encoded =
    to64((f[0]! << 16) | (f[6]! << 8) | f[12]!, 4) +
    to64((f[1]! << 16) | (f[7]! << 8) | f[13]!, 4) +
    to64((f[2]! << 16) | (f[8]! << 8) | f[14]!, 4) +
    to64((f[3]! << 16) | (f[9]! << 8) | f[15]!, 4) +
    to64((f[4]! << 16) | (f[10]! << 8) | f[5]!, 4) +
    to64(f[11]!, 2);
  return `$apr1$${salt.slice(0, 8)}$${encoded}`;
}

function equalText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Whether `password` matches `hash` (a format compile accepted: see compile-middlewares.ts hashFormat). */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  if (hash.startsWith('$2')) {
    // bcryptjs knows 2a and 2b; 2y (PHP's and htpasswd's name for the fixed algorithm) is the same as 2b.
    return bcrypt.compare(password, hash.startsWith('$2y$') ? `$2b$${hash.slice(4)}` : hash);
  }
  if (hash.startsWith('{SHA}')) return equalText(`{SHA}${createHash('sha1').update(password, 'utf8').digest('base64')}`, hash);
  if (hash.startsWith('$apr1$')) return equalText(apr1(password, hash.split('$')[2] ?? ''), hash);
  return false;
}
