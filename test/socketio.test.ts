/**
 * Socket.IO end to end, with the real socket.io server and socket.io-client and their default transports:
 * each client opens with HTTP long-polling (a GET handshake, then POSTs and GETs that must reach the server
 * holding its session) and upgrades to a WebSocket afterwards. Three servers behind Sluice with a sticky
 * cookie: 200 clients connect, upgrade and complete an emit/ack round trip. The same without the sticky
 * cookie fails with "Session ID unknown" (the servers say so), which is why the cookie is there. And a Traefik
 * configuration (static file plus dynamic file) that mounts the app under /wsk with replacePath runs as it is.
 *
 * In Node, engine.io-client keeps cookies only with `withCredentials: true` (a browser keeps them by itself).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Server } from 'socket.io';
import { io, type Socket } from 'socket.io-client';
import { startSluice, type SluiceProcess } from './helpers/sluice.js';

interface IoServer {
  readonly name: string;
  readonly url: string;
  /** Engine.IO connection errors by message ("Session ID unknown" when a request reached the wrong server). */
  readonly errors: string[];
  /** Sessions this server opened. */
  connections: number;
  close(): Promise<void>;
}

async function startIoServer(name: string): Promise<IoServer> {
  const server = http.createServer();
  const ioServer = new Server(server, { cors: { origin: true, credentials: true } });
  const state: IoServer = {
    name,
    url: '',
    errors: [],
    connections: 0,
    close: () => new Promise<void>((resolve) => ioServer.close(() => resolve())),
  };
  ioServer.engine.on('connection_error', (error: { message: string }) => state.errors.push(error.message));
  ioServer.on('connection', (socket) => {
    state.connections++;
    socket.on('echo', (data: unknown, ack: (reply: unknown) => void) => ack({ server: name, transport: socket.conn.transport.name, data }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return Object.assign(state, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
}

interface ClientResult {
  readonly ok: boolean;
  readonly reason: string;
  readonly server?: string;
  readonly transport?: string;
}

/** Connect with the default transports, wait for the upgrade to WebSocket, then emit and wait for the ack. */
function runClient(url: string, options: { path?: string } = {}, timeoutMs = 30_000): Promise<{ result: ClientResult; socket: Socket }> {
  return new Promise((resolve) => {
    const socket = io(url, { withCredentials: true, reconnection: false, forceNew: true, timeout: timeoutMs, ...options });
    let settled = false;
    const finish = (result: ClientResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ result, socket });
    };
    const timer = setTimeout(() => finish({ ok: false, reason: 'timed out' }), timeoutMs);
    socket.on('connect_error', (error) => finish({ ok: false, reason: `connect_error: ${error.message}` }));
    socket.on('disconnect', (reason) => finish({ ok: false, reason: `disconnect: ${reason}` }));
    socket.on('connect', () => {
      const engine = socket.io.engine;
      const roundTrip = (): void => {
        socket
          .timeout(timeoutMs)
          .emitWithAck('echo', 'ping')
          .then(
            (reply: { server: string; transport: string; data: string }) =>
              finish({ ok: reply.data === 'ping', reason: 'acked', server: reply.server, transport: reply.transport }),
            (error: Error) => finish({ ok: false, reason: `no ack: ${error.message}` }),
          );
      };
      if (engine.transport.name === 'websocket') roundTrip();
      else engine.once('upgrade', roundTrip);
    });
  });
}

async function runClients(count: number, url: string, options: { path?: string } = {}, timeoutMs = 30_000): Promise<ClientResult[]> {
  const runs = await Promise.all(Array.from({ length: count }, () => runClient(url, options, timeoutMs)));
  for (const { socket } of runs) socket.disconnect();
  return runs.map((r) => r.result);
}

function stickyConfig(servers: readonly IoServer[], sticky: boolean): string {
  return `entryPoints: { web: { address: "127.0.0.1:{PORT}" } }
loadBalancer: { stickySecret: "socket.io test" }
http:
  routers:
    io: { rule: "PathPrefix(\`/\`)", service: io }
  services:
    io:
      loadBalancer:
${sticky ? '        sticky: { cookie: { name: io_backend, httpOnly: true } }\n' : ''}        servers: [ ${servers.map((s) => `{ url: "${s.url}" }`).join(', ')} ]
`;
}

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

describe('Socket.IO behind Sluice', { timeout: 120_000 }, () => {
  test('three servers with a sticky cookie: 200 clients connect by polling, upgrade, and get their ack', async () => {
    const servers = [await startIoServer('io-0'), await startIoServer('io-1'), await startIoServer('io-2')];
    for (const s of servers) cleanups.push(() => s.close());
    const sluice: SluiceProcess = await startSluice(stickyConfig(servers, true), { workers: 2 });
    cleanups.push(() => sluice.stop());
    const results = await runClients(200, `http://127.0.0.1:${sluice.port}`);
    const failed = results.filter((r) => !r.ok);
    assert.deepEqual(failed.slice(0, 5), [], `${failed.length} of 200 failed`);
    assert.ok(results.every((r) => r.transport === 'websocket'), 'every round trip went over the upgraded WebSocket');
    // Every server got a share, and no session ever reached a server that did not hold it.
    for (const s of servers) assert.ok(s.connections > 20, `${s.name} opened only ${s.connections} sessions`);
    assert.deepEqual(servers.flatMap((s) => s.errors), []);
  });

  test('the same without the sticky cookie: requests of one session reach other servers, "Session ID unknown"', async () => {
    const servers = [await startIoServer('plain-0'), await startIoServer('plain-1'), await startIoServer('plain-2')];
    for (const s of servers) cleanups.push(() => s.close());
    const sluice = await startSluice(stickyConfig(servers, false), { workers: 2 });
    cleanups.push(() => sluice.stop());
    // A session whose requests reach the wrong server may also just wait for a long-poll: 8 s is enough to see it.
    const results = await runClients(30, `http://127.0.0.1:${sluice.port}`, {}, 8000);
    const failed = results.filter((r) => !r.ok);
    assert.ok(failed.length > 0, 'every client got through without stickiness: the test shows nothing');
    const errors = servers.flatMap((s) => s.errors);
    assert.ok(errors.includes('Session ID unknown'), `server errors: ${JSON.stringify(errors.slice(0, 5))}; client failures: ${JSON.stringify(failed.slice(0, 3))}`);
  });

  test('a Traefik configuration mounting the app under /wsk with replacePath runs unchanged', async () => {
    const servers = [await startIoServer('wsk-0'), await startIoServer('wsk-1')];
    for (const s of servers) cleanups.push(() => s.close());
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-wsk-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    // Traefik's dynamic configuration, as a Traefik user has it.
    writeFileSync(
      path.join(dir, 'dynamic.yml'),
      `http:
  routers:
    wsk:
      rule: "PathPrefix(\`/wsk\`)"
      entryPoints:
        - web
      service: socketio
      middlewares:
        - wsk-path@file
  middlewares:
    wsk-path:
      replacePath:
        path: "/socket.io/"
  services:
    socketio:
      loadBalancer:
        sticky:
          cookie:
            name: io
            httpOnly: true
        servers:
${servers.map((s) => `          - url: "${s.url}"`).join('\n')}
`,
    );
    // ... and the static one (entry points, the file provider).
    const sluice = await startSluice(`entryPoints:
  web:
    address: "127.0.0.1:{PORT}"
providers:
  file:
    filename: "${path.join(dir, 'dynamic.yml')}"
    watch: false
`);
    cleanups.push(() => sluice.stop());
    const results = await runClients(20, `http://127.0.0.1:${sluice.port}`, { path: '/wsk/' });
    assert.deepEqual(results.filter((r) => !r.ok).slice(0, 3), []);
    assert.ok(results.every((r) => r.transport === 'websocket'));
    assert.deepEqual(servers.flatMap((s) => s.errors), []);
  });
});
