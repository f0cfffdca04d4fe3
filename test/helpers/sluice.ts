/**
 * Test helpers: free ports, a real Sluice process started from a generated config, and `ws`
 * backends on loopback. Every test that starts something stops it in its `after`/`finally`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after } from 'node:test';
import { WebSocketServer, type WebSocket, type ServerOptions } from 'ws';
import type { IncomingMessage } from 'node:http';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SLUICE_BIN = path.join(REPO, 'bin/sluice.js');

/**
 * Free ports are looked for below the kernel's ephemeral range (ip_local_port_range). A port from listen(0)
 * comes from that range, and between the moment it was found free and the moment Sluice listened on it, an
 * outgoing connection (the test's, Sluice's to a backend, anything on the machine) could take it as its source
 * port: a CI run failed once with "cannot listen on quiet (127.0.0.1:45653): address in use". No outgoing
 * connection takes a port below the range.
 */
const PORT_FLOOR = 10_000;
const EPHEMERAL_START = ((): number => {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) ? first : 0;
  } catch {
    return 0;
  }
})();
/** Ports handed out lately: a test that asks for three before starting anything gets three different ones. */
const recent: number[] = [];

function canListen(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

function kernelPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A port that was free a moment ago, below the ephemeral range when there is room there. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  if (EPHEMERAL_START - PORT_FLOOR >= 1000) {
    for (let i = 0; i < 100; i++) {
      const port = PORT_FLOOR + Math.floor(Math.random() * (EPHEMERAL_START - PORT_FLOOR));
      if (recent.includes(port) || !(await canListen(port, host))) continue;
      recent.push(port);
      if (recent.length > 64) recent.shift();
      return port;
    }
  }
  return kernelPort(host);
}

export interface SluiceProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly url: string;
  /** The admin listener's port (`{ADMIN_PORT}` in the config, or a free port Sluice was given when the
   *  config has no `admin:` section, so parallel tests never fight over the default :9090). */
  readonly adminPort: number;
  /** `http://127.0.0.1:<adminPort>` */
  readonly adminUrl: string;
  readonly configFile: string;
  /** The temporary folder ({DIR}) holding the config and the `files` given. */
  readonly dir: string;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Everything the process wrote to stdout so far (the access log without filePath). */
  stdout(): string;
  /** Resolves once the process has exited and its stdout and stderr have been read to the end. */
  drained(): Promise<void>;
  /** SIGTERM, wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Start Sluice with `config` (YAML text). `{PORT}` in it is replaced by a free port, which becomes
 * `port`/`url`; `{ADMIN_PORT}` becomes another, the admin listener's (added as `admin.address` when the
 * config has no `admin:` key). `{DIR}` is a fresh temporary folder (removed at stop). Resolves once the
 * process says it listens.
 */
export async function startSluice(
  config: string,
  options: {
    workers?: number;
    timeoutMs?: number;
    env?: NodeJS.ProcessEnv;
    /** More files for {DIR} (name → text, the same placeholders), written before Sluice starts. */
    files?: Record<string, string>;
    /** More `sluice run` arguments after the default ones (e.g. --takeover). */
    extraArgs?: readonly string[];
    /** Use these ports instead of free ones (a second Sluice on the first one's ports). */
    port?: number;
    adminPort?: number;
    /** Resolve once stderr contains this instead of 'sluice listening'. */
    readyText?: string;
    /** The arguments after bin/sluice.js (default `run --config FILE --workers N`), to try other spellings. */
    args?: (configFile: string) => string[];
  } = {},
): Promise<SluiceProcess> {
  const port = options.port ?? (await freePort());
  let adminPort = options.adminPort ?? (await freePort());
  while (adminPort === port) adminPort = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-test-'));
  const configFile = path.join(dir, 'sluice.yaml');
  const fill = (text: string): string => text.replaceAll('{PORT}', String(port)).replaceAll('{ADMIN_PORT}', String(adminPort)).replaceAll('{DIR}', dir);
  for (const [name, text] of Object.entries(options.files ?? {})) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), fill(text));
  }
  const withAdmin = /^admin:/m.test(config) ? config : `${config}\nadmin:\n  address: "127.0.0.1:{ADMIN_PORT}"\n`;
  writeFileSync(configFile, fill(withAdmin));
  const args = [SLUICE_BIN, ...(options.args?.(configFile) ?? ['run', '--config', configFile, '--workers', String(options.workers ?? 1), ...(options.extraArgs ?? [])])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (stderr += d));
  // SLUICE_TEST_STDERR=DIR keeps every Sluice's stderr in DIR/sluice-PID.log, to debug a failure.
  if (process.env.SLUICE_TEST_STDERR) {
    const log = path.join(process.env.SLUICE_TEST_STDERR, `sluice-${child.pid}.log`);
    child.stderr!.on('data', (d: string) => appendFileSync(log, d));
  }
  let stdout = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => (stdout += d));
  const drained = new Promise<void>((resolve) => child.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sluice did not start within ${options.timeoutMs ?? 10000} ms:\n${stderr}`)), options.timeoutMs ?? 10000);
    const onData = (): void => {
      if (stderr.includes(options.readyText ?? 'sluice listening')) {
        clearTimeout(timer);
        child.stderr!.off('data', onData);
        resolve();
      }
    };
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sluice exited with ${code} before listening:\n${stderr}`));
    });
  });
  let exited: Promise<number | null> | null = null;
  return {
    child,
    port,
    url: `ws://127.0.0.1:${port}`,
    adminPort,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    configFile,
    dir,
    stderr: () => stderr,
    stdout: () => stdout,
    drained: () => drained,
    stop() {
      if (exited === null) {
        exited = new Promise((resolve) => {
          if (child.exitCode !== null) resolve(child.exitCode);
          else child.once('exit', (code) => resolve(code));
        });
        child.kill('SIGTERM');
        exited.finally(() => rmSync(dir, { recursive: true, force: true })).catch(() => undefined);
      }
      return exited;
    },
  };
}

/** A config with one entry point on {PORT}, one catch-all router and one service with `servers`. */
export function simpleConfig(servers: readonly string[], extra = ''): string {
  return `entryPoints:
  web:
    address: "127.0.0.1:{PORT}"
http:
  routers:
    all:
      rule: "PathPrefix(\`/\`)"
      service: pool
  services:
    pool:
      loadBalancer:
        servers:
${servers.map((url) => `          - url: "${url}"`).join('\n')}
${extra}`;
}

export interface TestBackend {
  readonly server: WebSocketServer;
  readonly port: number;
  readonly url: string;
  /** Requests that reached the upgrade, newest last. */
  readonly requests: IncomingMessage[];
  /** Live connections. */
  readonly sockets: Set<WebSocket>;
  close(): Promise<void>;
}

/**
 * Backends not closed yet. Whatever a test left open is closed when its file's tests are over: a test whose
 * Sluice failed to start threw before its `finally`, and the backend it had started kept the file's process,
 * and the test runner waiting on it, alive for good (a CI run hung so).
 */
const openBackends = new Set<TestBackend>();
after(async () => {
  for (const backend of [...openBackends]) await backend.close();
});

/** A `ws` backend on a free port; by default it echoes every message as it came. */
export async function startBackend(
  onConnection?: (ws: WebSocket, req: IncomingMessage) => void,
  options: Partial<ServerOptions> = {},
): Promise<TestBackend> {
  const requests: IncomingMessage[] = [];
  const sockets = new Set<WebSocket>();
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * 1024 * 1024, perMessageDeflate: false, ...options });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  server.on('connection', (ws, req) => {
    requests.push(req);
    sockets.add(ws);
    ws.on('close', () => sockets.delete(ws));
    ws.on('error', () => undefined);
    if (onConnection) onConnection(ws, req);
    else ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const port = (server.address() as AddressInfo).port;
  const backend: TestBackend = {
    server,
    port,
    url: `ws://127.0.0.1:${port}`,
    requests,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        openBackends.delete(backend);
        for (const ws of sockets) ws.terminate();
        server.close(() => resolve());
      }),
  };
  openBackends.add(backend);
  return backend;
}
