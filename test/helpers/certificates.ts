/**
 * Certificates for TLS tests, made with the `openssl` command in a temporary folder: a test CA, leaf
 * certificates it signs for the names asked, and self-signed ones that nothing trusts. EC P-256 keys,
 * so that a whole set takes a fraction of a second.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface CertificateFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
}

export class CertificateFactory {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'sluice-certs-'));
  readonly ca: CertificateFiles;

  constructor(caName = 'Sluice Test CA') {
    this.ca = this.selfSigned('ca', caName, [], true);
  }

  /** A certificate for `commonName` and `altNames` (`DNS:x`, `IP:y`) signed by this factory's CA. */
  issue(name: string, commonName: string, altNames: readonly string[]): CertificateFiles {
    const keyFile = path.join(this.dir, `${name}.key`);
    const csrFile = path.join(this.dir, `${name}.csr`);
    const certFile = path.join(this.dir, `${name}.pem`);
    const extFile = path.join(this.dir, `${name}.ext`);
    writeFileSync(extFile, `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=${altNames.join(',')}\n`);
    openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', csrFile, '-subj', `/CN=${commonName}`]);
    openssl(['x509', '-req', '-in', csrFile, '-CA', this.ca.certFile, '-CAkey', this.ca.keyFile, '-CAcreateserial', '-days', '2', '-out', certFile, '-extfile', extFile]);
    return read(certFile, keyFile);
  }

  /** A self-signed certificate (a CA when `isCa`), trusted by nobody unless given as a root. */
  selfSigned(name: string, commonName: string, altNames: readonly string[], isCa = false): CertificateFiles {
    const keyFile = path.join(this.dir, `${name}.key`);
    const certFile = path.join(this.dir, `${name}.pem`);
    const extensions = isCa ? ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'] : [];
    if (altNames.length > 0) extensions.push('-addext', `subjectAltName=${altNames.join(',')}`);
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${commonName}`, ...extensions]);
    return read(certFile, keyFile);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function read(certFile: string, keyFile: string): CertificateFiles {
  return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}
