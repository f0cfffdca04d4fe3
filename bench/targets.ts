/**
 * The things the bench compares and how to start each: the echo backends, then direct (no proxy),
 * Sluice with 1 and 2 workers, NGINX and HAProxy. Proxy configs are generated into a temporary
 * folder with the same choices for all: least-connections over the same three backends, WebSocket
 * upgrade headers, hour-long tunnel timeouts (so idle connections are not cut while held), enough
 * connection slots for the 8,000 held connections, and one core's worth of workers
 * (NGINX worker_processes 1, HAProxy nbthread 1) since each proxy gets one pinned core. Plain HTTP under
 * /http/ goes to three HTTP backends over keep-alive connections (NGINX `keepalive 64`; HAProxy and Sluice
 * keep theirs by default), least-connections too.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export type TargetName = 'direct' | 'uws' | 'sluice-1' | 'sluice-2' | 'nginx' | 'haproxy';
export const TARGETS: readonly TargetName[] = ['direct', 'uws', 'sluice-1', 'sluice-2', 'nginx', 'haproxy'];
export const TARGET_LABELS: Record<TargetName, string> = {
  direct: 'direct',
  uws: 'uWS.js alone',
  'sluice-1': 'Sluice 1w',
  'sluice-2': 'Sluice 2w',
  nginx: 'NGINX',
  haproxy: 'HAProxy',
};

/** A started proxy (or, for direct, none): where clients connect and which process to watch. */
export interface Running {
  readonly urls: readonly string[];
  /** Where the throughput row connects: the same proxy in front of the C echo backends (path /c/), or
   *  those backends themselves for direct; null when they were not started (ws-echo not built). */
  readonly throughputUrls: readonly string[] | null;
  /** Base URL of plain HTTP through this target (`/http/small`, `/http/1mib` below it); direct: a backend. */
  readonly httpUrl: string;
  /** The proxy's main process; null for direct. */
  readonly pid: number | null;
  stop(): Promise<void>;
}

/** Pinning: the proxy gets `proxyCpu`, generator and backends get `loadCpu`; null when not pinned. */
export interface Pinning {
  readonly proxyCpu: string | null;
  readonly loadCpu: string | null;
}

export function pinned(cpu: string | null, command: string, args: string[]): [string, string[]] {
  return cpu === null ? [command, args] : ['taskset', ['-c', cpu, command, ...args]];
}

/** A free TCP port on loopback (the kernel picks; released at once, so taken again in a moment). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      s.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Resolves once something accepts TCP on the port, or rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`exited with status ${child.exitCode} before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGTERM, then SIGKILL if it has not gone within 5 s. Only ever the process we started. */
export function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(killer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Keeps the last lines of a child's output so a failure to start can say why. */
function tail(child: ChildProcess): () => string {
  let text = '';
  const keep = (d: Buffer): void => {
    text = (text + d.toString()).slice(-2000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => text.trim().split('\n').slice(-3).join(' | ').slice(0, 400);
}

export interface Backends {
  readonly ports: readonly number[];
  readonly pid: number;
  stop(): Promise<void>;
}

/** Three uWS echo backends in one process, pinned with the load generator. */
export async function startBackends(pin: Pinning): Promise<Backends> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const script = join(REPO_ROOT, 'dist/loadtest/echo-backend.js');
  const [cmd, args] = pinned(pin.loadCpu, process.execPath, [script, '--ports', ports.join(',')]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const why = tail(child);
  for (const p of ports) await waitForPort(p, 10_000, child).catch((e: Error) => Promise.reject(new Error(`echo backends: ${e.message}: ${why()}`)));
  return { ports, pid: child.pid as number, stop: () => stopProcess(child) };
}

/** The C echo server (native/tools/ws-echo.c, built with the addon by `npm run build:native`). */
export const WS_ECHO = join(REPO_ROOT, 'native/build/Release/ws-echo');

/**
 * Three C echo backends (one ws-echo process, one thread), pinned with the load generator, for the
 * throughput row: the uWS echo backend tops out near 0.8-1.4M messages/s on one core, below what a proxy
 * may carry, so behind it that row would measure the backend. Null when ws-echo is not built.
 */
export async function startCEchoBackends(pin: Pinning): Promise<Backends | null> {
  if (!existsSync(WS_ECHO)) return null;
  const ports = [await freePort(), await freePort(), await freePort()];
  const [cmd, args] = pinned(pin.loadCpu, WS_ECHO, ports.map(String));
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const why = tail(child);
  for (const p of ports) await waitForPort(p, 10_000, child).catch((e: Error) => Promise.reject(new Error(`C echo backends: ${e.message}: ${why()}`)));
  return { ports, pid: child.pid as number, stop: () => stopProcess(child) };
}

/** Three plain HTTP backends (bench/http-backend.ts) in one process, pinned with the load generator. */
export async function startHttpBackends(pin: Pinning): Promise<Backends> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const script = join(REPO_ROOT, 'dist/bench/http-backend.js');
  const [cmd, args] = pinned(pin.loadCpu, process.execPath, [script, '--ports', ports.join(',')]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const why = tail(child);
  for (const p of ports) await waitForPort(p, 10_000, child).catch((e: Error) => Promise.reject(new Error(`http backends: ${e.message}: ${why()}`)));
  return { ports, pid: child.pid as number, stop: () => stopProcess(child) };
}

export function commandExists(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** NGINX and HAProxy come from apt when missing, so a fresh machine or CI can run the bench unattended. */
export function ensureInstalled(
  log: (line: string) => void,
  wanted: readonly (readonly [command: string, pkg: string])[] = [
    ['nginx', 'nginx-light'],
    ['haproxy', 'haproxy'],
  ],
): void {
  const missing = wanted.filter(([command]) => !commandExists(command));
  if (missing.length === 0) return;
  const packages = missing.map(([, pkg]) => pkg as string);
  log(`installing ${packages.join(', ')} with apt-get (once)`);
  const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
  const run = (args: string[]): void => {
    const [cmd, ...rest] = [...sudo, ...args] as [string, ...string[]];
    execFileSync(cmd, rest, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  };
  run(['apt-get', 'update', '-qq']);
  run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...packages]);
}

export function nginxConfig(dir: string, port: number, backends: readonly number[], httpBackends: readonly number[] = [], cBackends: readonly number[] = []): string {
  const cEcho =
    cBackends.length === 0
      ? ''
      : `    upstream cecho {
        least_conn;
${cBackends.map((p) => `        server 127.0.0.1:${p};`).join('\n')}
    }
`;
  const cLocation =
    cBackends.length === 0
      ? ''
      : `        location /c/ {
            proxy_pass http://cecho;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_buffering off;
        }
`;
  return `# Generated by bench/targets.ts: NGINX as a WebSocket reverse proxy, comparable to Sluice's config.
worker_processes 1;
worker_rlimit_nofile 19900;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events {
    # Every proxied WebSocket holds two connections (client and upstream): 8,000 held need 16,000.
    worker_connections 19000;
    multi_accept on;
}
http {
    access_log off;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    upstream echo {
        least_conn;
${backends.map((p) => `        server 127.0.0.1:${p};`).join('\n')}
    }
${cEcho}    # Plain HTTP: keep-alive connections to the backends, as Sluice and HAProxy keep them.
    upstream web {
        least_conn;
${httpBackends.map((p) => `        server 127.0.0.1:${p};`).join('\n')}
        keepalive 64;
    }
    server {
        listen 127.0.0.1:${port} backlog=4096;
${cLocation}        location /http/ {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
        location / {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            # The 60 s defaults would cut idle WebSockets; an hour is a tunnel timeout.
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_buffering off;
        }
    }
}
`;
}

export function haproxyConfig(port: number, backends: readonly number[], httpBackends: readonly number[] = [], cBackends: readonly number[] = []): string {
  const cRoute = cBackends.length === 0 ? '' : '    acl c_echo path_beg /c/\n    use_backend cecho if c_echo\n';
  const cBackend = cBackends.length === 0 ? '' : `backend cecho\n    balance leastconn\n${cBackends.map((p, i) => `    server cecho${i + 1} 127.0.0.1:${p}`).join('\n')}\n`;
  return `# Generated by bench/targets.ts: HAProxy as a WebSocket reverse proxy, comparable to Sluice's config.
global
    # Two descriptors per proxied connection; 9,000 fits under a 20,000 open-files limit.
    maxconn 9000
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # Once upgraded, a WebSocket is a tunnel: idle for up to an hour before HAProxy cuts it.
    timeout tunnel 1h
    timeout client-fin 5s
    maxconn 9000
frontend ws
    bind 127.0.0.1:${port}
    acl plain_http path_beg /http/
    use_backend web if plain_http
${cRoute}    default_backend echo
backend echo
    balance leastconn
${backends.map((p, i) => `    server echo${i + 1} 127.0.0.1:${p}`).join('\n')}
backend web
    balance leastconn
${httpBackends.map((p, i) => `    server web${i + 1} 127.0.0.1:${p}`).join('\n')}
${cBackend}`;
}

export function sluiceConfig(port: number, adminPort: number, backends: readonly number[], httpBackends: readonly number[] = [], cBackends: readonly number[] = []): string {
  const cRouter = cBackends.length === 0 ? '' : '    cecho: { rule: "PathPrefix(`/c/`)", service: cecho }\n';
  const cService = cBackends.length === 0 ? '' : `    cecho:\n      loadBalancer:\n        servers: [ ${cBackends.map((p) => `{ url: "ws://127.0.0.1:${p}" }`).join(', ')} ]\n`;
  // Without HTTP backends (limits-cost.ts, metrics-cost.ts) there is no /http/ route: an empty pool is an error.
  const webRouter = httpBackends.length === 0 ? '' : '    web: { rule: "PathPrefix(`/http/`)", service: web }\n';
  const webService =
    httpBackends.length === 0 ? '' : `    web:\n      loadBalancer:\n        servers: [ ${httpBackends.map((p) => `{ url: "http://127.0.0.1:${p}" }`).join(', ')} ]\n`;
  return `# Generated by bench/targets.ts: Sluice in front of the bench's three echo backends.
# The admin listener gets a free loopback port so it never collides with another Sluice's :9090.
admin: { address: "127.0.0.1:${adminPort}" }
entryPoints:
  web: { address: "127.0.0.1:${port}" }
http:
  routers:
    echo: { rule: "PathPrefix(\`/\`)", service: echo }
${webRouter}${cRouter}  services:
    echo:
      loadBalancer:
        servers: [ ${backends.map((p) => `{ url: "ws://127.0.0.1:${p}" }`).join(', ')} ]
${webService}${cService}`;
}

/**
 * A private copy of the built Sluice (dist/src, bin, package.json and whatever its "imports" map
 * names, such as the native addon) under bench/, taken when the bench starts: every run then
 * measures the same build even if someone rebuilds dist/ meanwhile, and bare imports still resolve
 * through the repository's node_modules. Returns its root.
 */
export function snapshotSluice(): string | null {
  const built = join(REPO_ROOT, 'dist/src/cli/main.js');
  if (!existsSync(built)) return null;
  const root = mkdtempSync(join(REPO_ROOT, 'bench/.sluice-snapshot-'));
  // Besides dist/src and bin, whatever package.json's "imports" map points at (e.g. #native → native/).
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { imports?: unknown };
  const dirs = new Set(['dist/src', 'bin']);
  const collect = (v: unknown): void => {
    if (typeof v === 'string') {
      const top = /^\.\/([^/]+)\//.exec(v)?.[1];
      if (top && top !== 'dist') dirs.add(top);
    } else if (v && typeof v === 'object') Object.values(v).forEach(collect);
  };
  collect(pkg.imports);
  for (const d of dirs) {
    if (existsSync(join(REPO_ROOT, d))) cpSync(join(REPO_ROOT, d), join(root, d), { recursive: true });
  }
  cpSync(join(REPO_ROOT, 'package.json'), join(root, 'package.json'));
  return root;
}

export function removeSnapshot(root: string | null): void {
  if (root) rmSync(root, { recursive: true, force: true });
}

/** Sluice prints a line with "listening" when every worker listens. */
function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number, why: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`no '${pattern.source}' line within ${timeoutMs} ms: ${why()}`)), timeoutMs);
    const onData = (d: Buffer): void => {
      seen += d.toString();
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with status ${code} before listening: ${why()}`));
    });
  });
}

/** `sluiceRoot`: where bin/sluice.js and dist/src live (the snapshot, or the repository). */
export async function startTarget(
  name: TargetName,
  backends: readonly number[],
  pin: Pinning,
  sluiceRoot = REPO_ROOT,
  httpBackends: readonly number[] = [],
  cBackends: readonly number[] = [],
): Promise<Running> {
  if (name === 'direct') {
    return {
      urls: backends.map((p) => `ws://127.0.0.1:${p}/`),
      throughputUrls: cBackends.length === 0 ? null : cBackends.map((p) => `ws://127.0.0.1:${p}/c/`),
      httpUrl: `http://127.0.0.1:${httpBackends[0] ?? 0}`,
      pid: null,
      stop: async () => {},
    };
  }
  const port = await freePort();
  if (name === 'uws') return startUwsAlone(port, await freePort(), pin);
  const dir = mkdtempSync(join(tmpdir(), `sluice-bench-${name}-`));
  let child: ChildProcess;
  if (name === 'nginx') {
    const file = join(dir, 'nginx.conf');
    writeFileSync(file, nginxConfig(dir, port, backends, httpBackends, cBackends));
    const [cmd, args] = pinned(pin.proxyCpu, 'nginx', ['-p', dir, '-c', file, '-e', join(dir, 'nginx-error.log')]);
    child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } else if (name === 'haproxy') {
    const file = join(dir, 'haproxy.cfg');
    writeFileSync(file, haproxyConfig(port, backends, httpBackends, cBackends));
    const [cmd, args] = pinned(pin.proxyCpu, 'haproxy', ['-db', '-f', file]);
    child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } else {
    const main = join(sluiceRoot, 'dist/src/cli/main.js');
    if (!existsSync(main)) throw new Error(`Sluice is not built (dist/src/cli/main.js missing): run npx tsc -p .`);
    const file = join(dir, 'sluice.yaml');
    writeFileSync(file, sluiceConfig(port, await freePort(), backends, httpBackends, cBackends));
    const workers = name === 'sluice-1' ? '1' : '2';
    const [cmd, args] = pinned(pin.proxyCpu, process.execPath, [join(sluiceRoot, 'bin/sluice.js'), 'run', '--config', file, '--workers', workers]);
    child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: sluiceRoot });
  }
  const why = tail(child);
  try {
    if (name.startsWith('sluice')) await waitForLine(child, /listening/i, 20_000, why);
    await waitForPort(port, 10_000, child);
  } catch (err) {
    await stopProcess(child);
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${TARGET_LABELS[name]} did not start: ${(err as Error).message} ${why()}`.trim());
  }
  const stop = async (): Promise<void> => {
    await stopProcess(child);
    rmSync(dir, { recursive: true, force: true }); // the generated config and logs
  };
  return {
    urls: [`ws://127.0.0.1:${port}/`],
    throughputUrls: cBackends.length === 0 ? null : [`ws://127.0.0.1:${port}/c/`],
    httpUrl: `http://127.0.0.1:${port}`,
    pid: child.pid as number,
    stop,
  };
}

/** One line naming each component's version, for the results file. */
export function versions(): Record<string, string> {
  const run = (cmd: string, args: string[]): string => {
    try {
      const r = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return r.trim().split('\n')[0] ?? '';
    } catch (err) {
      // nginx -v writes its version to stderr.
      const e = err as { stderr?: string };
      return (e.stderr ?? '').trim().split('\n')[0] ?? 'unknown';
    }
  };
  const nginx = (() => {
    try {
      return execFileSync('sh', ['-c', 'nginx -v 2>&1'], { encoding: 'utf8' }).trim();
    } catch {
      return 'not installed';
    }
  })();
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  const uws = (() => {
    try {
      return (JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules/uWebSockets.js/package.json'), 'utf8')) as { version: string }).version;
    } catch {
      return 'unknown';
    }
  })();
  return {
    node: process.version,
    sluice: `${pkg.version} (${run('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'])})`,
    'uWebSockets.js': uws,
    nginx: nginx.replace(/^nginx version: /, ''),
    haproxy: commandExists('haproxy') ? run('haproxy', ['-v']) : 'not installed',
  };
}

/** uWS.js answering every row itself (bench/uws-alone.ts) where the proxy would run: the runtime's floor. */
async function startUwsAlone(wsPort: number, httpPort: number, pin: Pinning): Promise<Running> {
  const script = join(REPO_ROOT, 'dist/bench/uws-alone.js');
  const [cmd, args] = pinned(pin.proxyCpu, process.execPath, [script, String(wsPort), String(httpPort)]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const why = tail(child);
  try {
    await waitForPort(wsPort, 10_000, child);
    await waitForPort(httpPort, 10_000, child);
  } catch (err) {
    await stopProcess(child);
    throw new Error(`${TARGET_LABELS.uws} did not start: ${(err as Error).message} ${why()}`.trim());
  }
  return {
    urls: [`ws://127.0.0.1:${wsPort}/`],
    throughputUrls: [`ws://127.0.0.1:${wsPort}/c/`],
    httpUrl: `http://127.0.0.1:${httpPort}`,
    pid: child.pid as number,
    stop: () => stopProcess(child),
  };
}
