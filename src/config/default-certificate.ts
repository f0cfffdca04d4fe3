/**
 * The self-signed certificate Sluice serves when a TLS router has no certificate that matches its host
 * names (Traefik serves its "TRAEFIK DEFAULT CERT" in the same case). It is made with node:crypto alone (an
 * EC P-256 key and a minimal X.509 v3 encoder below), so it works in a slim container without openssl and
 * without network. uWebSockets.js loads certificates from files only, so the PEM files go into a private
 * temporary directory (mode 0700, files 0600) that is removed when the process exits.
 *
 * A certificate is made once per set of names for the life of the process: a reload that asks for the same
 * names gets the same files and fingerprint, so it compiles to an equal snapshot and opens no new app.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { CertificateSpec } from './snapshot.js';

/** The subject of every generated certificate: clients that show it tell the operator where it came from. */
export const DEFAULT_CERTIFICATE_SUBJECT = 'SLUICE DEFAULT CERT';
/** Traefik's default certificate is valid for a year too. */
const VALIDITY_MS = 365 * 24 * 3600 * 1000;

const generated = new Map<string, CertificateSpec>();
let directory: string | null = null;

/** The directory generated certificates are written to ('' before the first one). */
export function generatedCertificateDirectory(): string {
  return directory ?? '';
}

/**
 * The generated certificate for `names` (DNS names or IP addresses; empty: a certificate for no name, served
 * to clients whose SNI matches nothing). Same names, same certificate, for the life of the process.
 */
export function defaultCertificate(names: readonly string[]): CertificateSpec {
  const sorted = [...new Set(names.map((n) => n.toLowerCase()))].sort();
  const key = sorted.join(',');
  const cached = generated.get(key);
  if (cached !== undefined) return cached;
  const { certPem, keyPem } = selfSignedCertificate(sorted);
  const dir = privateDirectory();
  // Named by its names, so the same names give the same file names in every process (golden tests).
  const base = `default-${createHash('sha256').update(key).digest('hex').slice(0, 12)}`;
  const certFile = join(dir, `${base}.crt`);
  const keyFile = join(dir, `${base}.key`);
  writeFileSync(keyFile, keyPem, { mode: 0o600 });
  writeFileSync(certFile, certPem, { mode: 0o600 });
  const fingerprint = createHash('sha256').update(certPem).update('\0').update(keyPem).digest('hex');
  const spec: CertificateSpec = { certFile, keyFile, names: sorted, fingerprint, generated: true };
  generated.set(key, spec);
  return spec;
}

function privateDirectory(): string {
  if (directory !== null) return directory;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-default-cert-'));
  directory = dir;
  // mkdtemp creates the directory 0700: only this user can read the key.
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A self-signed X.509 v3 server certificate for `names`, with a fresh P-256 key, as PEM. */
export function selfSignedCertificate(names: readonly string[], now = Date.now()): { certPem: string; keyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const tbs = tbsCertificate(names, publicKey, now);
  const signature = sign('sha256', tbs, privateKey);
  const certificate = sequence(tbs, ECDSA_WITH_SHA256, bitString(signature));
  return { certPem: pem('CERTIFICATE', certificate), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

function tbsCertificate(names: readonly string[], publicKey: KeyObject, now: number): Buffer {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40; // positive, and no leading zero byte to strip
  const name = sequence(set(sequence(oid('2.5.4.3'), utf8(DEFAULT_CERTIFICATE_SUBJECT))));
  const extensions: Buffer[] = [
    extension('2.5.29.19', true, sequence()), // basicConstraints: not a CA
    extension('2.5.29.15', true, bitString(Buffer.from([0x80]), 7)), // keyUsage: digitalSignature
    extension('2.5.29.37', false, sequence(oid('1.3.6.1.5.5.7.3.1'))), // extKeyUsage: serverAuth
  ];
  if (names.length > 0) {
    const altNames = names.map((n) => (isIP(n) === 0 ? tlv(0x82, Buffer.from(n, 'ascii')) : tlv(0x87, ipBytes(n))));
    extensions.push(extension('2.5.29.17', false, sequence(...altNames)));
  }
  return sequence(
    tlv(0xa0, integer(Buffer.from([2]))), // v3
    integer(serial),
    ECDSA_WITH_SHA256,
    name,
    sequence(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + VALIDITY_MS))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    tlv(0xa3, sequence(...extensions)),
  );
}

// DER, only the types a certificate needs.

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const length = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), length, content]);
}

function sequence(...items: Buffer[]): Buffer {
  return tlv(0x30, Buffer.concat(items));
}

function set(...items: Buffer[]): Buffer {
  return tlv(0x31, Buffer.concat(items));
}

function integer(bytes: Buffer): Buffer {
  return tlv(0x02, bytes[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes);
}

function bitString(bytes: Buffer, unusedBits = 0): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

function utf8(text: string): Buffer {
  return tlv(0x0c, Buffer.from(text, 'utf8'));
}

function utcTime(date: Date): Buffer {
  const iso = date.toISOString(); // 2026-11-21T22:10:05.120Z → 261121221005Z
  return tlv(0x17, Buffer.from(`${iso.slice(2, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`, 'ascii'));
}

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const bytes = [40 * parts[0]! + parts[1]!];
  for (const part of parts.slice(2)) {
    const base128: number[] = [];
    for (let v = part; ; v = Math.floor(v / 128)) {
      base128.unshift((v % 128) | (base128.length > 0 ? 0x80 : 0));
      if (v < 128) break;
    }
    bytes.push(...base128);
  }
  return tlv(0x06, Buffer.from(bytes));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return sequence(oid(id), ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), tlv(0x04, value));
}

function ipBytes(address: string): Buffer {
  if (isIP(address) === 4) return Buffer.from(address.split('.').map(Number));
  const [head = '', tail = ''] = address.split('::');
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const left = groups(head);
  const right = address.includes('::') ? groups(tail) : [];
  const all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  return Buffer.from(all.flatMap((g) => [g >> 8, g & 0xff]));
}

const ECDSA_WITH_SHA256 = sequence(oid('1.2.840.10045.4.3.2'));

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
