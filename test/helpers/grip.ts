/**
 * Test side of fan-out: a GRIP backend written the way @fanoutio/grip users write one (a `ws` server that
 * accepts the grip extension Sluice offers and sends `c:` control messages built with the library's
 * createWebSocketControlMessage), a publisher through the library's Publisher (JWT on), and clients that
 * record what they receive.
 *
 * The backend subscribes each client to the channels in its URL (`/?channels=a,b`) and then says
 * `subscribed` (so a test knows the subscriptions are in place: the backend's messages arrive in order).
 * A client steers its backend with commands: `unsubscribe:<ch>`, `subscribe:<ch>`, `detach`,
 * `keepalive:<seconds>:<content>`, `close:<code>:<reason>`, `raw:<text>` (sent as is, without prefix).
 */
import type { IncomingMessage } from 'node:http';
import { Auth, createWebSocketControlMessage, Publisher, WebSocketMessageFormat } from '@fanoutio/grip';
import { WebSocket } from 'ws';
import { simpleConfig, startBackend, type TestBackend } from './sluice.js';

export const PUBLISH_KEY = 'fan-out test key';

function control(ws: WebSocket, type: string, args: Record<string, string> | null = null): void {
  ws.send(`c:${createWebSocketControlMessage(type, args)}`);
}

export interface GripBackend extends TestBackend {
  /** Backend sockets that saw their close (a detach closes the backend leg). */
  readonly closedSockets: number;
}

/** A GRIP backend; `prefix` is the message-prefix it announces (undefined: none announced, Pushpin's "m:"). */
export async function startGripBackend(prefix?: string): Promise<GripBackend> {
  let closedSockets = 0;
  const sent = prefix ?? 'm:';
  const backend = await startBackend((ws: WebSocket, req: IncomingMessage) => {
    ws.on('close', () => closedSockets++);
    const url = new URL(req.url ?? '/', 'http://backend');
    const channels = (url.searchParams.get('channels') ?? '').split(',').filter((c) => c !== '');
    for (const channel of channels) control(ws, 'subscribe', { channel });
    ws.send(`${sent}subscribed`);
    ws.on('message', (data) => {
      const text = String(data);
      const [command, ...rest] = text.split(':');
      const arg = rest.join(':');
      switch (command) {
        case 'subscribe':
        case 'unsubscribe':
          control(ws, command, { channel: arg });
          ws.send(`${sent}${command}d ${arg}`);
          return;
        case 'detach':
          control(ws, 'detach');
          return;
        case 'keepalive': {
          const [seconds, ...content] = arg.split(':');
          control(ws, 'keep-alive', { content: content.join(':'), timeout: seconds! });
          ws.send(`${sent}keepalive set`);
          return;
        }
        case 'close': {
          const [code, ...reason] = arg.split(':');
          control(ws, 'close', { code: code!, reason: reason.join(':') });
          return;
        }
        case 'raw':
          ws.send(arg);
          return;
        default:
          ws.send(`${sent}echo ${text}`);
      }
    });
  });
  // Accept grip only when offered (as a GRIP backend behind Pushpin does), with the chosen prefix.
  backend.server.on('headers', (headers: string[], req: IncomingMessage) => {
    if (!/\bgrip\b/.test(req.headers['sec-websocket-extensions'] ?? '')) return;
    headers.push(prefix === undefined ? 'Sec-WebSocket-Extensions: grip' : `Sec-WebSocket-Extensions: grip; message-prefix="${prefix}"`);
  });
  // defineProperty, not Object.assign: assign would copy the getter's value once.
  return Object.defineProperty(backend, 'closedSockets', { get: () => closedSockets }) as GripBackend;
}

/** @fanoutio/grip's publisher, pointed at Sluice's publish listener, signing a JWT with `key`. */
export function gripPublisher(publishPort: number, key = PUBLISH_KEY): Publisher {
  return new Publisher({ control_uri: `http://127.0.0.1:${publishPort}/`, control_iss: 'sluice-test', key });
}

/** The Authorization header @fanoutio/grip sends for `key` (a JWT, HS256, expiring in 10 minutes). */
export function authHeader(key = PUBLISH_KEY): Promise<string> {
  return new Auth.Jwt({ iss: 'sluice-test' }, new TextEncoder().encode(key)).buildHeader();
}

export function publishText(publisher: Publisher, channel: string, text: string): Promise<void> {
  return publisher.publishFormats(channel, new WebSocketMessageFormat(text));
}

/** A client that keeps every message it gets (as text), in order. */
export interface Listener {
  readonly ws: WebSocket;
  readonly received: string[];
  readonly closed: Promise<{ code: number; reason: string }>;
}

/** Connect through Sluice, subscribed to `channels` by the GRIP backend; resolves once subscribed. */
export function listen(url: string, channels: readonly string[], options: { localAddress?: string } = {}): Promise<Listener> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}/?channels=${channels.join(',')}`, { perMessageDeflate: false, ...options });
    const received: string[] = [];
    const closed = new Promise<{ code: number; reason: string }>((done) => ws.on('close', (code, reason) => done({ code, reason: String(reason) })));
    ws.on('error', reject);
    ws.on('message', (data) => {
      const text = String(data);
      if (text === 'subscribed') resolve({ ws, received, closed });
      else received.push(text);
    });
  });
}

/**
 * A Sluice config for the fan-out tests: one entry point, every path to the GRIP backend, the publish
 * listener with the test key. `fanoutExtra` goes inside `fanout:` (two-space indented lines), `topLevel`
 * after it (other top-level sections).
 */
export function fanoutConfig(backendUrl: string, publishPort: number, fanoutExtra = '', topLevel = ''): string {
  return simpleConfig([backendUrl], `fanout:\n  publish:\n    address: "127.0.0.1:${publishPort}"\n    key: "${PUBLISH_KEY}"\n${fanoutExtra}${topLevel}`);
}
