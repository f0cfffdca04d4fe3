/**
 * The files a config names, read at compile time: certificates and their keys (read, parsed, checked to
 * belong together, named by CN and DNS SANs, fingerprinted so a reload can tell a renewed file), and any
 * other file (CAs, middleware files) through readConfigFile, whose errors name the key and the path as
 * the user wrote it. Relative paths resolve from the file the key came from.
 */
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

import type { CompileContext } from './compile.js';
import { indexPath, keyPath, type Problems } from './errors.js';
import type { CertificateSpec } from './snapshot.js';
import type { CertificateFiles, CheckedConfig } from './validate.js';

export function compileCertificates(config: CheckedConfig, context: CompileContext, problems: Problems): CertificateSpec[] {
  const certificates: CertificateSpec[] = [];
  const add = (files: CertificateFiles, path: string): void => {
    if (files.certFile === undefined || files.keyFile === undefined) return;
    const certFile = resolve(baseDirOf(context, path), files.certFile);
    const keyFile = resolve(baseDirOf(context, path), files.keyFile);
    if (certificates.some((c) => c.certFile === certFile && c.keyFile === keyFile)) return;
    const loaded = loadCertificate(files.certFile, files.keyFile, context, path, problems);
    if (loaded !== undefined) certificates.push({ certFile, keyFile, ...loaded });
  };
  // The default store's certificate goes first: workers serve certificates[0] when no name matches the SNI.
  const defaultCertificate = config.tls?.stores?.default?.defaultCertificate;
  if (defaultCertificate !== undefined) add(defaultCertificate, 'tls.stores.default.defaultCertificate');
  (config.tls?.certificates ?? []).forEach((files, i) => add(files, indexPath('tls.certificates', i)));
  return certificates;
}

/** Reads and cross-checks a certificate and its key; returns the DNS names it is valid for. */
function loadCertificate(
  certPath: string,
  keyPath_: string,
  context: CompileContext,
  path: string,
  problems: Problems,
): { names: string[]; fingerprint: string; generated: boolean } | undefined {
  const certPem = readConfigFile(certPath, context, keyPath(path, 'certFile'), problems, 'a PEM certificate');
  const keyPem = readConfigFile(keyPath_, context, keyPath(path, 'keyFile'), problems, 'a PEM private key');
  let certificate: X509Certificate | undefined;
  if (certPem !== undefined) {
    try {
      certificate = new X509Certificate(certPem);
    } catch {
      problems.add(keyPath(path, 'certFile'), `'${certPath}' holds no PEM certificate (expected a PEM certificate)`);
    }
  }
  if (keyPem !== undefined) {
    try {
      const key = createPrivateKey(keyPem);
      if (certificate !== undefined && !certificate.checkPrivateKey(key)) {
        problems.add(
          keyPath(path, 'keyFile'),
          `key '${keyPath_}' does not belong to certificate '${certPath}' (expected the key the certificate was issued for)`,
        );
      }
    } catch {
      problems.add(keyPath(path, 'keyFile'), `'${keyPath_}' holds no PEM private key (expected a PEM private key)`);
    }
  }
  if (certificate === undefined) return undefined;
  const fingerprint = createHash('sha256').update(certPem ?? '').update('\0').update(keyPem ?? '').digest('hex');
  return { names: certificateNames(certificate), fingerprint, generated: false };
}

/** CN first, then the subjectAltName DNS entries; lowercased, without duplicates. */
function certificateNames(certificate: X509Certificate): string[] {
  const names: string[] = [];
  const commonName = /^CN=(.*)$/m.exec(certificate.subject)?.[1];
  if (commonName !== undefined) names.push(commonName.trim().toLowerCase());
  for (const entry of (certificate.subjectAltName ?? '').split(/,\s*/)) {
    if (entry.startsWith('DNS:')) names.push(entry.slice(4).trim().toLowerCase());
  }
  return [...new Set(names)].filter((n) => n !== '');
}

/** The directory relative file paths at config key `path` are resolved from. */
export function baseDirOf(context: CompileContext, path: string): string {
  return context.baseDirFor?.(path) ?? context.baseDir;
}

/** Reads a file named in the config; the message shows the path as written, since that is what the user can fix. */
export function readConfigFile(
  file: string,
  context: CompileContext,
  path: string,
  problems: Problems,
  what: string,
): string | undefined {
  try {
    return readFileSync(resolve(baseDirOf(context, path), file), 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : String(code);
    problems.add(path, `cannot read '${file}': ${reason} (expected ${what}, relative to the config file's directory)`);
    return undefined;
  }
}

/** The PEM CA files at config key `path` (a list), checked, as one bundle; '' for none or unreadable ones. */
export function readCaBundle(files: readonly string[], context: CompileContext, path: string, problems: Problems): string {
  return files
    .map((file, i) => {
      const at = indexPath(path, i);
      const pem = readConfigFile(file, context, at, problems, 'a PEM CA certificate');
      if (pem === undefined) return '';
      try {
        new X509Certificate(pem);
      } catch {
        problems.add(at, `'${file}' holds no PEM certificate (expected a PEM CA certificate)`);
        return '';
      }
      return pem.endsWith('\n') ? pem : `${pem}\n`;
    })
    .join('');
}
