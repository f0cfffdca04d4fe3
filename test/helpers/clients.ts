/**
 * WebSocket clients for tests: connect through Sluice and learn either the open socket or the HTTP
 * status Sluice answered instead, round-trip a message, and wait for a close with its code.
 */
import { WebSocket, type ClientOptions } from 'ws';

/** How an upgrade attempt ended: an open socket, or the HTTP answer that refused it. */
export interface CloseEvent {
  readonly code: number;
  readonly reason: string;
}

/** The close of every socket these helpers opened, recorded from the moment it opened. */
const closeEvents = new WeakMap<WebSocket, Promise<CloseEvent>>();

export type UpgradeOutcome =
  | { readonly kind: 'open'; readonly ws: WebSocket }
  | { readonly kind: 'refused'; readonly status: number; readonly body: string };

/** Attempt an upgrade; never rejects on an HTTP refusal (that is an outcome), only on socket errors or timeout. */
export function tryUpgrade(url: string, options: ClientOptions = {}, timeoutMs = 5000): Promise<UpgradeOutcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`upgrade to ${url} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      closeEvents.set(ws, new Promise((done) => ws.once('close', (code, reason) => done({ code, reason: reason.toString('utf8') }))));
      resolve({ kind: 'open', ws });
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        clearTimeout(timer);
        ws.terminate();
        resolve({ kind: 'refused', status: res.statusCode ?? 0, body });
      });
    });
    ws.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** Connect and expect the upgrade to succeed. */
export async function connect(url: string, options: ClientOptions = {}): Promise<WebSocket> {
  const outcome = await tryUpgrade(url, options);
  if (outcome.kind === 'refused') throw new Error(`upgrade refused with ${outcome.status}: ${outcome.body.trim()}`);
  outcome.ws.on('error', () => undefined);
  return outcome.ws;
}

/** Send `text` and resolve with the next message received (the echo). */
export function roundTrip(ws: WebSocket, text: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.off('message', onMessage);
      reject(new Error(`no echo of '${text}' within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (data: Buffer): void => {
      clearTimeout(timer);
      resolve(data.toString('utf8'));
    };
    ws.once('message', onMessage);
    ws.send(text);
  });
}

/** Resolves with the close code and reason once `ws` (opened by tryUpgrade or connect) is closed,
 *  even if that happened before the call. */
export function closed(ws: WebSocket): Promise<CloseEvent> {
  const event = closeEvents.get(ws);
  if (event === undefined) throw new Error('closed() needs a socket opened by tryUpgrade/connect');
  return event;
}

/** Terminate every client still open (cleanup after a test, failed or not). */
export function terminateAll(clients: Iterable<WebSocket>): void {
  for (const ws of clients) ws.terminate();
}
