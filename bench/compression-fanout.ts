/**
 * Does uWebSockets.js compress a published message once, or once per subscriber? A standalone measurement
 * of uWS's own pub/sub (what fan-out builds on): one uWS app in this process publishes a JSON message to a
 * topic with N subscribers, which are raw TCP clients in a child process (so their work is not counted)
 * that negotiated permessage-deflate and count the frames and bytes they get. Reported per delivery: the
 * publisher's CPU (µs, this process, from the first publish until every subscriber has every message) and
 * the bytes on the wire, for compression off, shared and dedicated, each with the compress flag set and
 * clear, at 64 B and 2 KiB. Bounded: a few seconds per row.
 *
 *   npm run build && node dist/bench/compression-fanout.js [--subscribers 200] [--messages 300]
 *
 * Needs a quiet machine for stable figures; run it with the rest of the bench.
 */
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import uWS from 'uWebSockets.js';

const OFFER = 'permessage-deflate; client_max_window_bits';

export interface FanoutRow {
  readonly mode: 'off' | 'shared' | 'dedicated';
  readonly size: number;
  readonly compress: boolean;
  readonly subscribers: number;
  readonly messages: number;
  /** Publisher CPU per delivery (one message to one subscriber), µs. */
  readonly usPerDelivery: number;
  /** Bytes a subscriber received per message (frame header included). */
  readonly wireBytesPerMessage: number;
}

const MODES = {
  off: uWS.DISABLED,
  shared: uWS.SHARED_COMPRESSOR | uWS.SHARED_DECOMPRESSOR,
  dedicated: uWS.DEDICATED_COMPRESSOR_32KB | uWS.SHARED_DECOMPRESSOR,
} as const;

function message(size: number, seq: number): string {
  let text = '';
  for (let i = 0; text.length < size; i++) text += `{"symbol":"SYM${(seq + i) % 97}","bid":${((seq * 31 + i * 7) % 9973) / 10},"seq":${seq}},`;
  return text.slice(0, size);
}

// ---- subscriber side (child process) ------------------------------------------------------------

/** Open `count` raw subscribers to `port`, count data frames and bytes; report on stdout. */
function runSubscribers(port: number, count: number, expect: number): void {
  let done = 0;
  let bytes = 0;
  const sockets: Socket[] = [];
  let open = 0;
  for (let i = 0; i < count; i++) {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    let head = true;
    let pending: Buffer = Buffer.alloc(0);
    let frames = 0;
    socket.on('error', () => undefined);
    socket.write(
      `GET /feed HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: ${OFFER}\r\n\r\n`,
    );
    socket.on('data', (d: Buffer) => {
      if (head) {
        const end = d.indexOf('\r\n\r\n');
        if (end < 0) return;
        head = false;
        if (++open === count) process.stdout.write('ready\n');
        d = d.subarray(end + 4);
      }
      bytes += d.length;
      pending = pending.length === 0 ? d : Buffer.concat([pending, d]);
      for (;;) {
        if (pending.length < 2) break;
        let length = pending[1]! & 0x7f;
        let at = 2;
        if (length === 126) {
          if (pending.length < 4) break;
          length = pending.readUInt16BE(2);
          at = 4;
        } else if (length === 127) {
          if (pending.length < 10) break;
          length = Number(pending.readBigUInt64BE(2));
          at = 10;
        }
        if (pending.length < at + length) break;
        pending = pending.subarray(at + length);
        if (++frames === expect && ++done === count) process.stdout.write(`done ${bytes}\n`);
      }
    });
  }
}

// ---- publisher side -----------------------------------------------------------------------------

async function measureRow(mode: keyof typeof MODES, size: number, compress: boolean, subscribers: number, messages: number): Promise<FanoutRow> {
  let subscribed = 0;
  const app = uWS.App().ws('/*', {
    compression: MODES[mode],
    maxBackpressure: 64 * 1024 * 1024,
    idleTimeout: 0,
    upgrade: (res, req, context) => {
      res.upgrade({}, req.getHeader('sec-websocket-key'), '', req.getHeader('sec-websocket-extensions'), context);
    },
    open: (ws) => {
      ws.subscribe('feed');
      subscribed++;
    },
  });
  const listen = await new Promise<uWS.us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('cannot listen')))),
  );
  const port = uWS.us_socket_local_port(listen as unknown as uWS.us_socket);
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--subscribe', String(port), String(subscribers), String(messages)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const lines: ((line: string) => void)[] = [];
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      lines.shift()?.(line);
    }
  });
  const nextLine = (ms: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`subscribers: no answer within ${ms} ms`)), ms);
      lines.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  try {
    await nextLine(20_000);
    while (subscribed < subscribers) await new Promise((r) => setTimeout(r, 10));
    const payloads = Array.from({ length: 16 }, (_, i) => message(size, i));
    const finished = nextLine(60_000);
    const cpu0 = process.cpuUsage();
    // Publish in batches, yielding between them so uWS drains to the sockets as a server would.
    for (let sent = 0; sent < messages; ) {
      for (let b = 0; b < 20 && sent < messages; b++, sent++) app.publish('feed', payloads[sent % payloads.length]!, false, compress);
      await new Promise((r) => setImmediate(r));
    }
    const line = await finished;
    const cpu = process.cpuUsage(cpu0);
    const bytes = Number(line.split(' ')[1]);
    return {
      mode,
      size,
      compress,
      subscribers,
      messages,
      usPerDelivery: (cpu.user + cpu.system) / (subscribers * messages),
      wireBytesPerMessage: bytes / (subscribers * messages),
    };
  } finally {
    child.kill();
    uWS.us_listen_socket_close(listen);
    (app as uWS.TemplatedApp & { close?: () => void }).close?.();
  }
}

export async function measureFanout(subscribers = 200, messages = 300, log: (line: string) => void = () => undefined): Promise<FanoutRow[]> {
  const rows: FanoutRow[] = [];
  for (const size of [64, 2048]) {
    for (const mode of ['off', 'shared', 'dedicated'] as const) {
      for (const compress of mode === 'off' ? [false] : [false, true]) {
        const row = await measureRow(mode, size, compress, subscribers, messages);
        log(`    fan-out ${size} B, ${mode}${mode === 'off' ? '' : compress ? ', compress' : ', not compressed'}: ${row.usPerDelivery.toFixed(2)} µs per delivery, ${row.wireBytesPerMessage.toFixed(0)} B on the wire`);
        rows.push(row);
      }
    }
  }
  return rows;
}

const invoked = process.argv[1] === fileURLToPath(import.meta.url);
if (invoked && process.argv[2] === '--subscribe') {
  runSubscribers(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]));
} else if (invoked) {
  const arg = (name: string, fallback: number): number => {
    const i = process.argv.indexOf(name);
    return i < 0 ? fallback : Number(process.argv[i + 1]);
  };
  measureFanout(arg('--subscribers', 200), arg('--messages', 300), (line) => process.stdout.write(`${line}\n`)).then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
}
