/**
 * permessage-deflate on the backend leg (serversTransport.websocketCompression): the offer Sluice adds to
 * the upgrade request, the check of what the backend's 101 negotiated, and the inflation of the messages
 * the backend compresses. Sluice never compresses toward a backend (RFC 7692 lets a sender leave any
 * message plain), so only this direction costs CPU.
 *
 * Why zlib.inflateRawSync with a dictionary rather than one long-lived inflate stream per connection:
 * the pump is synchronous (a read's frames go to the client inside one ws.cork()), Node's zlib streams
 * are asynchronous, and its only synchronous entry point closes its stream after one call. Context
 * takeover is the LZ77 window carrying over from one message to the next, and that window is exactly the
 * last 32 KiB (or 2^server_max_window_bits bytes) of what was inflated before: so each message is inflated
 * by a fresh inflater given that history as its preset dictionary, which decodes the same bytes a
 * long-lived inflater would. Costs: a zlib stream per compressed message (~12-15 µs for 2 KiB on the test
 * machine) and the window kept per connection (none with server_no_context_takeover).
 *
 * Limits: a message inflates to at most websocket.maxMessageSize (zlib's maxOutputLength stops it there,
 * so a zip bomb costs at most that much memory), and the compressed fragments of one message are held
 * until its last one (bounded by the same size). The native leg (native/) has no inflater: backends with
 * websocketCompression always use this Node socket leg (upgrade.ts).
 */
import zlib from 'node:zlib';
import { Total } from '../shared/layout.js';
import { countTotal } from './context.js';
import { Opcode } from './frame-codec.js';
import { countBackendWire } from './metrics.js';
import { deliverData, failFromBackend, type Tunnel } from './tunnel.js';
import type { WsExtension } from './ws-extensions.js';

export const PERMESSAGE_DEFLATE = 'permessage-deflate';
/** The line added to the upgrade request of a backend whose transport has websocketCompression. */
export const BACKEND_DEFLATE_OFFER = 'Sec-WebSocket-Extensions: permessage-deflate\r\n';

/**
 * '' when the extensions of the backend's 101 are acceptable, else why not (the upgrade then fails with a
 * 502, as for any broken handshake). `offered`: the extension names Sluice offered this backend. Only
 * permessage-deflate's parameters are checked here; client_* ones are accepted as they bind only a sender,
 * and Sluice sends nothing compressed.
 */
export function backendExtensionsProblem(extensions: readonly WsExtension[] | null, offered: readonly string[]): string {
  if (extensions === null) return 'backend sent an invalid Sec-WebSocket-Extensions header';
  const seen = new Set<string>();
  for (const extension of extensions) {
    if (!offered.includes(extension.name)) return `backend negotiated extension '${extension.name}' that Sluice did not offer`;
    if (seen.has(extension.name)) return `backend negotiated extension '${extension.name}' twice`;
    seen.add(extension.name);
    if (extension.name !== PERMESSAGE_DEFLATE) continue;
    const params = new Set<string>();
    for (const [name, value] of extension.params) {
      if (params.has(name)) return `backend sent permessage-deflate parameter '${name}' twice`;
      params.add(name);
      const flag = name === 'server_no_context_takeover' || name === 'client_no_context_takeover';
      const bits = name === 'server_max_window_bits' || name === 'client_max_window_bits';
      if (!(flag && value === true) && !(bits && value !== true && /^(8|9|1[0-5])$/.test(value))) {
        return `backend sent an invalid permessage-deflate parameter '${name}${value === true ? '' : `=${value}`}'`;
      }
    }
  }
  return '';
}

/** The permessage-deflate the backend accepted, or null when it accepted none. */
export function backendDeflate(extensions: readonly WsExtension[]): WsExtension | null {
  return extensions.find((e) => e.name === PERMESSAGE_DEFLATE) ?? null;
}

/** Thrown for a message past maxMessageSize (1009); zlib's own errors (corrupt data) mean 1007. */
export class InflatedTooBig extends RangeError {}

/** One backend connection's inflater (see the file comment). */
export class BackendInflater {
  /** The last `windowSize` inflated bytes (context takeover); null until the first message, or always
   *  when the backend keeps no context. */
  private history: Buffer | null = null;
  private historyLength = 0;
  private readonly windowSize: number;
  /** Compressed fragments of the message in progress (copied: they come from a shared read buffer). */
  private parts: Buffer[] = [];
  private partsLength = 0;
  /** Longest compressed message accepted: incompressible data grows by 5 bytes per 64 KiB stored block. */
  readonly wireLimit: number;
  private readonly plain: zlib.ZlibOptions;
  private readonly preset: zlib.ZlibOptions;

  constructor(maxMessageSize: number, negotiated: WsExtension) {
    let windowBits = 15;
    let contextTakeover = true;
    for (const [name, value] of negotiated.params) {
      if (name === 'server_no_context_takeover') contextTakeover = false;
      else if (name === 'server_max_window_bits' && value !== true) windowBits = Number(value);
    }
    this.windowSize = contextTakeover ? 1 << windowBits : 0;
    this.wireLimit = maxMessageSize + Math.ceil(maxMessageSize / 65535) * 5 + 64;
    // Window 15 decodes what any smaller window encoded; the history only needs the backend's window.
    this.plain = { windowBits: 15, finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: maxMessageSize };
    this.preset = { ...this.plain };
  }

  /** One frame of a compressed message: the inflated message at its last frame, null before. Throws
   *  InflatedTooBig past maxMessageSize, zlib's Error on corrupt data. */
  frame(payload: Uint8Array, fin: boolean): Buffer | null {
    if (this.partsLength + payload.byteLength > this.wireLimit) throw new InflatedTooBig('message too big');
    if (!fin) {
      this.parts.push(Buffer.from(payload));
      this.partsLength += payload.byteLength;
      return null;
    }
    let input = payload;
    if (this.parts.length > 0) {
      this.parts.push(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength));
      input = Buffer.concat(this.parts, this.partsLength + payload.byteLength);
      this.parts = [];
      this.partsLength = 0;
    }
    let options = this.plain;
    if (this.historyLength > 0) {
      this.preset.dictionary = this.history!.subarray(0, this.historyLength);
      options = this.preset;
    }
    let out: Buffer;
    try {
      out = zlib.inflateRawSync(input, options);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new InflatedTooBig('message too big');
      throw error;
    }
    if (this.windowSize > 0) this.remember(out);
    return out;
  }

  private remember(out: Buffer): void {
    const size = this.windowSize;
    const history = (this.history ??= Buffer.allocUnsafe(size));
    if (out.length >= size) {
      out.copy(history, 0, out.length - size);
      this.historyLength = size;
      return;
    }
    const keep = Math.min(this.historyLength, size - out.length);
    if (keep > 0) history.copyWithin(0, this.historyLength - keep, this.historyLength);
    out.copy(history, keep);
    this.historyLength = keep + out.length;
  }
}

/**
 * A backend frame with RSV1 set, or a continuation of a compressed message (backend-frames.ts; only when
 * `t.inflater` exists). The inflated message goes to the client whole, at its last frame: a compressed
 * message cannot be passed on fragment by fragment with a synchronous inflate.
 */
export function inflateFromBackend(t: Tunnel, b0: number, payload: Uint8Array): void {
  const opcode = b0 & 0x0f;
  const fin = (b0 & 0x80) !== 0;
  const rsv = b0 & 0x70;
  const starts = rsv === 0x40 && (opcode === Opcode.Text || opcode === Opcode.Binary) && t.inflatingOpcode === 0;
  const continues = rsv === 0 && opcode === Opcode.Continuation && t.inflatingOpcode !== 0;
  if (!starts && !continues) {
    const inside = t.inflatingOpcode !== 0 && opcode !== Opcode.Continuation;
    t.inflatingOpcode = 0;
    failFromBackend(t, 1002, inside ? 'backend started a message inside a fragmented one' : rsv === 0x40 ? 'backend set RSV1 on a frame that cannot start a compressed message' : 'backend set reserved bits');
    return;
  }
  if (starts && t.fragmentOpcode !== 0) {
    failFromBackend(t, 1002, 'backend started a message inside a fragmented one');
    return;
  }
  if (starts) t.inflatingOpcode = opcode;
  countBackendWire(t, payload.byteLength);
  let message: Buffer | null;
  try {
    message = t.inflater!.frame(payload, fin);
  } catch (error) {
    t.inflatingOpcode = 0;
    if (error instanceof InflatedTooBig) {
      countTotal(Total.OversizeCloses);
      failFromBackend(t, 1009, 'message too big');
    } else {
      failFromBackend(t, 1007, 'backend sent invalid compressed data');
    }
    return;
  }
  if (message === null) return;
  const messageOpcode = t.inflatingOpcode;
  t.inflatingOpcode = 0;
  deliverData(t, messageOpcode, true, message, 0);
}
