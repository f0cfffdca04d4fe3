/**
 * GRIP on a proxied WebSocket, as Pushpin's WebSocket passthrough does it (fastly/pushpin
 * src/proxy/wsproxysession.cpp): with fan-out on, Sluice offers `Sec-WebSocket-Extensions: grip` to the
 * backend; a backend that answers its 101 with `grip` (optionally `; message-prefix="…"`, default "m:")
 * turns GRIP on for that connection, and the extension is taken out before the 101 reaches the client.
 * From then on, backend messages are filtered here before the pump sends them:
 *  - a single-frame text message starting with `c:` is a control message (JSON): `subscribe`,
 *    `unsubscribe` (a channel), `detach` (the backend leg closes, the client stays subscribed), `keep-alive`
 *    (content sent after an idle time, or at an interval), `close` (code and reason); others Pushpin knows
 *    (`session`, `set-meta`, `send-delayed`, `flush-delayed`) are ignored;
 *  - a message starting with the prefix goes to the client without it;
 *  - anything else is dropped, as Pushpin drops it.
 * Only the backend can subscribe a client: a client's own messages are never read for control.
 *
 * Cost on a GRIP connection: a prefix compare per backend message, plus a view object when the prefix is
 * not empty (uWS send takes no offset). Control messages are parsed with JSON.parse: they are rare.
 */
import type { FanoutSettings } from '../config/snapshot.js';
import { FanoutKind } from '../shared/fanout-wire.js';
import { closeClient, coarseNow, GripSession, setKeepAlive, subscribe, unsubscribe, type KeepAlive } from './fanout-delivery.js';
import { Opcode } from './frame-codec.js';
import { Side } from './metrics.js';
import { detachBackend, type Tunnel } from './tunnel.js';
import type { WsExtension } from './ws-extensions.js';

/** Pushpin's default keep-alive timeout (DEFAULT_WS_KEEPALIVE_TIMEOUT), in seconds. */
const DEFAULT_KEEP_ALIVE_SECONDS = 55;
const DEFAULT_PREFIX = Buffer.from('m:');
const CONTROL_C = 0x63; // 'c'
const COLON = 0x3a; // ':'

/** The header line offering GRIP to the backend, or '' when fan-out is off in `fanout`'s generation. */
export function gripOffer(fanout: FanoutSettings | null): string {
  return fanout === null ? '' : 'Sec-WebSocket-Extensions: grip\r\n';
}

/**
 * The backend's 101 extensions (parsed: ws-extensions.ts) with `grip` taken out, turning GRIP on for `t`
 * when fan-out is on. Whatever is left is judged by the caller against what Sluice offered.
 */
export function takeGripExtension(t: Tunnel, extensions: readonly WsExtension[]): WsExtension[] {
  const fanout = t.gen.snapshot.fanout;
  const rest: WsExtension[] = [];
  for (const extension of extensions) {
    if (extension.name === 'grip' && fanout !== null && t.grip === null) {
      const prefix = extension.params.find(([name]) => name === 'message-prefix')?.[1];
      t.grip = new GripSession(t, typeof prefix === 'string' ? Buffer.from(prefix, 'utf8') : prefix === true ? Buffer.alloc(0) : DEFAULT_PREFIX, fanout);
    } else rest.push(extension);
  }
  return rest;
}

function startsWith(payload: Uint8Array, prefix: Buffer): boolean {
  if (payload.byteLength < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (payload[i] !== prefix[i]) return false;
  return true;
}

/**
 * One backend data frame of a GRIP connection: what to send the client (the payload without the prefix),
 * or null when the frame is consumed here (control message, message without the prefix, after detach).
 * A message is kept or dropped whole: its continuation frames follow its first frame's fate.
 */
export function gripFilter(t: Tunnel, opcode: number, fin: boolean, payload: Uint8Array): Uint8Array | null {
  const s = t.grip!;
  if (s.detached) return null;
  if (opcode === Opcode.Continuation) {
    if (!s.skipping) return payload;
    if (fin) s.skipping = false;
    return null;
  }
  if (opcode === Opcode.Text && payload.byteLength >= 2 && payload[0] === CONTROL_C && payload[1] === COLON) {
    // Control messages must come in one frame (as in Pushpin): a fragmented one is dropped whole.
    if (fin) control(t, s, payload);
    else s.skipping = true;
    return null;
  }
  const prefix = s.prefix;
  if (!startsWith(payload, prefix)) {
    s.skipping = !fin;
    return null;
  }
  // Only a session with a keep-alive needs the exact time (the next keep-alive is due from it).
  s.lastSentAt = s.keepAlive === null ? coarseNow : Date.now();
  return prefix.length === 0 ? payload : payload.subarray(prefix.length);
}

type Json = Record<string, unknown>;

/** A number, or a string of digits: Pushpin converts either (and @fanoutio/grip's helper takes strings only). */
function integer(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && /^\d+$/.test(value)) return Number(value);
  return undefined;
}

function control(t: Tunnel, s: GripSession, payload: Uint8Array): void {
  let message: unknown;
  try {
    message = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset + 2, payload.byteLength - 2).toString('utf8'));
  } catch {
    return; // Pushpin ignores a control message that is not JSON
  }
  if (message === null || typeof message !== 'object' || Array.isArray(message)) return;
  const m = message as Json;
  switch (m.type) {
    case 'subscribe':
      if (typeof m.channel === 'string' && m.channel !== '') subscribe(s, m.channel);
      return;
    case 'unsubscribe':
      if (typeof m.channel === 'string') unsubscribe(s, m.channel);
      return;
    case 'detach':
      s.detached = true;
      detachBackend(t);
      return;
    case 'keep-alive':
      setKeepAlive(s, keepAliveOf(m));
      return;
    case 'close':
      closeClient(t, integer(m.code) ?? 0, typeof m.reason === 'string' ? m.reason : '', Side.Backend);
      return;
  }
}

/** Pushpin's keep-alive fields: content | content-bin (base64), message-type, timeout (s), mode. No
 *  content turns keep-alives off. */
function keepAliveOf(m: Json): KeepAlive | null {
  let payload: Buffer;
  let kind = FanoutKind.Text; // Pushpin's default, for content-bin too
  if (typeof m['content-bin'] === 'string') payload = Buffer.from(m['content-bin'], 'base64');
  else if (typeof m.content === 'string') payload = Buffer.from(m.content, 'utf8');
  else return null;
  switch (m['message-type']) {
    case 'text':
      kind = FanoutKind.Text;
      break;
    case 'binary':
      kind = FanoutKind.Binary;
      break;
    case 'ping':
      kind = FanoutKind.Ping;
      break;
    case 'pong':
      kind = FanoutKind.Pong;
      break;
  }
  if ((kind === FanoutKind.Ping || kind === FanoutKind.Pong) && payload.length > 125) return null;
  const timeout = integer(m.timeout);
  const seconds = timeout !== undefined && timeout > 0 ? timeout : DEFAULT_KEEP_ALIVE_SECONDS;
  return { kind, payload, timeoutMs: seconds * 1000, interval: m.mode === 'interval' };
}
