/**
 * The two helper processes of the fan-out bench (bench/fanout.ts), one script with a role each:
 *
 *  --role backend --mode grip|classic --port P
 *    A `ws` backend. grip: accepts the grip extension a GRIP proxy offers (Sluice, Pushpin) and subscribes
 *    each connection to the channel named in its URL (`/?channel=bench`) with a `c:` control message, then
 *    idles: the proxy does the fan-out. classic: keeps every connection and, on `POST /publish` (the raw
 *    message as body), sends the message to each of them itself — the shape without a fan-out proxy.
 *
 *  --role receiver --url ws://host:port/path --connections N [--client native|node]
 *    N WebSocket clients (spread over 127.0.0.2-51 as source addresses) on the load generator's C client
 *    when it is built (fanout-native-receiver.ts), else on raw Node sockets with just enough RFC 6455 to
 *    read server frames: each message carries its publish time (Float64, ms since the epoch,
 *    performance.timeOrigin-based) in its first 8 bytes, so the receiver records publish-to-receive
 *    latency. Prints `ready N` once all are open; on stdin `reset` starts a window, `report` prints the
 *    window as one JSON line ({ received, p50, p99, p999, max } in µs). One thread, one core: at high rates
 *    it is the limit, which the bench reports.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { WebSocketServer, type WebSocket } from 'ws';
import { newHistogram, percentiles, recordMicros } from '../loadtest/histogram.js';
import { loadNativeClient } from '../loadtest/native-client.js';
import { nativeReceiver, type ReceiverControl } from './fanout-native-receiver.js';

function arg(name: string, fallback?: string): string {
  const at = process.argv.indexOf(`--${name}`);
  const value = at >= 0 ? process.argv[at + 1] : fallback;
  if (value === undefined) throw new Error(`fanout-peer: --${name} is required`);
  return value;
}

// ---- backend --------------------------------------------------------------------------------------

function backend(mode: 'grip' | 'classic', port: number): void {
  const sockets = new Set<WebSocket>();
  const server = http.createServer((req, res) => {
    if (mode !== 'classic' || req.method !== 'POST') {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const message = Buffer.concat(chunks);
      // The classic shape: the backend writes every copy itself (ws frames each send separately).
      for (const ws of sockets) ws.send(message, { binary: true });
      res.writeHead(204).end();
    });
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  if (mode === 'grip') {
    wss.on('headers', (headers, req) => {
      if (/\bgrip\b/.test(req.headers['sec-websocket-extensions'] ?? '')) headers.push('Sec-WebSocket-Extensions: grip');
    });
  }
  wss.on('connection', (ws, req) => {
    ws.on('error', () => undefined);
    if (mode === 'classic') {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      return;
    }
    const channel = new URL(req.url ?? '/', 'http://x').searchParams.get('channel') ?? 'bench';
    ws.send(`c:${JSON.stringify({ type: 'subscribe', channel })}`);
    ws.send('m:subscribed');
  });
  server.listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
}

// ---- receiver -------------------------------------------------------------------------------------

interface Conn {
  socket: net.Socket;
  upgraded: boolean;
  pending: Buffer | null;
  subscribed: boolean;
}

let received = 0;
let histogram = newHistogram();
let subscribedCount = 0;
const SUBSCRIBED = Buffer.from('subscribed');

function onFrames(c: Conn, chunk: Buffer): void {
  let buf = c.pending === null ? chunk : Buffer.concat([c.pending, chunk]);
  c.pending = null;
  let at = 0;
  const now = performance.timeOrigin + performance.now();
  while (buf.length - at >= 2) {
    const opcode = buf[at]! & 0x0f;
    let length = buf[at + 1]! & 0x7f;
    let header = 2;
    if (length === 126) {
      if (buf.length - at < 4) break;
      length = buf.readUInt16BE(at + 2);
      header = 4;
    } else if (length === 127) {
      if (buf.length - at < 10) break;
      length = Number(buf.readBigUInt64BE(at + 2));
      header = 10;
    }
    if (buf.length - at < header + length) break;
    const start = at + header;
    if (opcode === 2 && length >= 8) {
      received++;
      recordMicros(histogram, (now - buf.readDoubleLE(start)) * 1000);
    } else if (opcode === 1 && !c.subscribed && buf.subarray(start, start + length).equals(SUBSCRIBED)) {
      c.subscribed = true;
      subscribedCount++;
    } else if (opcode === 9) {
      c.socket.write(maskedFrame(0x8a, buf.subarray(start, start + length)));
    }
    at = start + length;
  }
  if (at < buf.length) c.pending = Buffer.from(buf.subarray(at));
  buf = Buffer.alloc(0);
}

function maskedFrame(b0: number, payload: Buffer): Buffer {
  const frame = Buffer.alloc(6 + payload.length);
  frame[0] = b0;
  frame[1] = 0x80 | payload.length;
  randomBytes(4).copy(frame, 2);
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i]! ^ frame[2 + (i & 3)]!;
  return frame;
}

function open(url: URL, index: number, subscribeSignal: boolean): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: url.hostname, port: Number(url.port), localAddress: `127.0.0.${2 + (index % 50)}` });
    const c: Conn = { socket, upgraded: false, pending: null, subscribed: !subscribeSignal };
    let head = Buffer.alloc(0);
    socket.setNoDelay(true);
    socket.once('error', reject);
    socket.on('connect', () => {
      socket.write(
        `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    socket.on('data', (chunk: Buffer) => {
      if (c.upgraded) {
        onFrames(c, chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const status = head.toString('latin1', 0, head.indexOf('\r\n'));
      if (!/ 101 /.test(status)) {
        reject(new Error(`upgrade refused: ${status}`));
        socket.destroy();
        return;
      }
      c.upgraded = true;
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      resolve(c);
      if (head.length > end + 4) onFrames(c, head.subarray(end + 4));
    });
  });
}

/** Open with a few retries: a proxy may refuse an upgrade while a burst of them is in flight (Pushpin
 *  answers 502 when its queue to zurl is full); the bench measures delivery, not the ramp. */
async function openRetrying(url: URL, index: number, subscribeSignal: boolean): Promise<Conn> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await open(url, index, subscribeSignal);
    } catch (error) {
      if (attempt >= 10) throw error;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}

const CONNECT_CONCURRENCY = 100;

async function receiver(url: URL, connections: number, subscribeSignal: boolean): Promise<void> {
  const conns: Conn[] = [];
  for (let i = 0; i < connections; i += CONNECT_CONCURRENCY) {
    const batch = await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, connections - i) }, (_, j) => openRetrying(url, i + j, subscribeSignal)));
    conns.push(...batch);
  }
  if (subscribeSignal) {
    const deadline = Date.now() + 30_000;
    while (subscribedCount < connections && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }
  process.stdout.write(`ready ${subscribeSignal ? subscribedCount : conns.length}\n`);
  serveWindows({
    reset: () => {
      received = 0;
      histogram.destroy();
      histogram = newHistogram();
    },
    report: () => {
      const p = percentiles(histogram);
      return { received, p50: p.p50, p99: p.p99, p999: p.p999, max: p.max };
    },
    quit: () => conns.forEach((c) => c.socket.destroy()),
  });
}

/** The bench's commands on stdin: `reset` opens a window, `report` prints it as a JSON line, `quit`. */
function serveWindows(control: ReceiverControl): void {
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'reset') control.reset();
    else if (line === 'report') process.stdout.write(`${JSON.stringify(control.report())}\n`);
    else if (line === 'quit') {
      control.quit();
      process.exit(0);
    }
  });
}

/** The receiver on the C client when it is built (unless --client node), else on Node sockets. */
async function anyReceiver(url: URL, connections: number, subscribeSignal: boolean, client: string): Promise<void> {
  const { loadgen } = client === 'node' ? { loadgen: null } : await loadNativeClient();
  if (loadgen === null) return receiver(url, connections, subscribeSignal);
  const { ready, control } = await nativeReceiver(loadgen, url, connections, subscribeSignal);
  process.stdout.write(`ready ${ready} native\n`);
  serveWindows(control);
}

const role = arg('role');
if (role === 'backend') backend(arg('mode') as 'grip' | 'classic', Number(arg('port')));
else if (role === 'receiver') void anyReceiver(new URL(arg('url')), Number(arg('connections')), arg('signal', 'yes') === 'yes', arg('client', 'native')).catch((error: Error) => {
  process.stdout.write(`failed ${error.message}\n`);
  process.exit(1);
});
else throw new Error(`fanout-peer: unknown --role '${role}'`);
