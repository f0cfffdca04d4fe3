/**
 * Many echoing WebSocket clients that check their own stream: each sends a sequence number at a steady
 * rate and expects exactly the same numbers back, in order. A lost, duplicated or reordered echo is
 * recorded on the client with what was expected; a close is recorded with its code and time. Client
 * source addresses are spread over 127.0.0.2-127.0.0.9 so thousands of connections do not exhaust the
 * ephemeral ports of one address. Also: the uWS echo backends of loadtest/ in a child process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import WebSocket from 'ws';
import { REPO } from './sluice.js';

export const localAddress = (i: number): string => `127.0.0.${2 + (i % 8)}`;

export interface FleetClient {
  readonly ws: WebSocket;
  readonly index: number;
  sent: number;
  received: number;
  /** The first problem seen on this stream ('' when none). */
  problem: string;
  closeCode: number;
  closedAt: number;
}

export class Fleet {
  private timer: NodeJS.Timeout | null = null;

  private constructor(readonly clients: readonly FleetClient[]) {}

  /** Open `count` connections to `url`, `batch` at a time. */
  static async open(url: string, count: number, batch = 100): Promise<Fleet> {
    const clients: FleetClient[] = [];
    for (let start = 0; start < count; start += batch) {
      const opening: Promise<FleetClient>[] = [];
      for (let i = start; i < Math.min(count, start + batch); i++) opening.push(openClient(url, i));
      clients.push(...(await Promise.all(opening)));
    }
    return new Fleet(clients);
  }

  /** Every open client sends its next number `perSecond` times a second (one timer for all). */
  start(perSecond: number): void {
    this.timer = setInterval(() => {
      for (const c of this.clients) {
        if (c.ws.readyState !== WebSocket.OPEN) continue;
        c.ws.send(String(c.sent++));
      }
    }, 1000 / perSecond);
  }

  /** Stop sending, then wait until every open client got back all it sent (or closed). */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.clients.every((c) => c.ws.readyState !== WebSocket.OPEN || c.received === c.sent)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const behind = this.clients.filter((c) => c.ws.readyState === WebSocket.OPEN && c.received !== c.sent);
    throw new Error(`${behind.length} client(s) still waiting for echoes, e.g. #${behind[0]?.index}: sent ${behind[0]?.sent}, received ${behind[0]?.received}`);
  }

  open(): FleetClient[] {
    return this.clients.filter((c) => c.ws.readyState === WebSocket.OPEN);
  }

  closed(code?: number): FleetClient[] {
    return this.clients.filter((c) => c.closeCode !== 0 && (code === undefined || c.closeCode === code));
  }

  /** Clients closed by `at` (a Date.now() time). */
  closedBy(at: number): number {
    let n = 0;
    for (const c of this.clients) if (c.closeCode !== 0 && c.closedAt <= at) n++;
    return n;
  }

  problems(): FleetClient[] {
    return this.clients.filter((c) => c.problem !== '');
  }

  terminate(): void {
    if (this.timer !== null) clearInterval(this.timer);
    for (const c of this.clients) c.ws.terminate();
  }
}

function openClient(url: string, index: number): Promise<FleetClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { localAddress: localAddress(index), perMessageDeflate: false });
    const client: FleetClient = { ws, index, sent: 0, received: 0, problem: '', closeCode: 0, closedAt: 0 };
    ws.on('message', (data) => {
      const n = Number(String(data));
      if (client.problem === '' && n !== client.received) client.problem = `expected echo ${client.received}, got ${n}`;
      client.received++;
    });
    ws.on('close', (code) => {
      client.closeCode = code;
      client.closedAt = Date.now();
    });
    ws.once('open', () => resolve(client));
    ws.once('error', (error) => {
      if (ws.readyState !== WebSocket.OPEN && client.closeCode === 0) reject(error);
    });
  });
}

export interface EchoProcess {
  readonly child: ChildProcess;
  readonly ports: readonly number[];
  readonly urls: readonly string[];
  stop(): Promise<void>;
}

/** `count` uWS echo backends (loadtest/echo-backend.ts) in a child process, on free ports. */
export function startEchoProcess(count: number): Promise<EchoProcess> {
  const script = path.join(REPO, 'dist/loadtest/echo-backend.js');
  const child = spawn(process.execPath, [script, '--ports', Array.from({ length: count }, () => '0').join(',')], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      out += chunk;
      if (!out.includes('\n')) return;
      const ports = [...out.matchAll(/:(\d+)/g)].map((m) => Number(m[1]));
      resolve({
        child,
        ports,
        urls: ports.map((p) => `ws://127.0.0.1:${p}`),
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null) done();
            else {
              child.once('exit', () => done());
              child.kill('SIGTERM');
            }
          }),
      });
    });
    child.once('exit', (code) => reject(new Error(`echo backends exited with ${code}`)));
  });
}
