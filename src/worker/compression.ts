/**
 * permessage-deflate (RFC 7692) on the client leg, which uWebSockets.js terminates: the uWS options of an
 * entry point, the client's offer as uWS may see it, and the estimate of what compressed messages cost on
 * the wire. The backend leg's half (offer, answer, inflate) is backend-inflate.ts.
 *
 * Negotiation: uWS negotiates by itself when res.upgrade() gets an offer, but uWebSockets.js 20.30 reads
 * only the first permessage-deflate offer, accepts Safari's x-webkit-deflate-frame, and answers some offers
 * with parameters the client did not allow (measured: a shared compressor answers server_max_window_bits=10
 * with a 32 KiB window and no server_max_window_bits; a dedicated one ignores server_no_context_takeover and
 * answers server_max_window_bits=8 with 9). RFC 7692 §5 says to decline such an offer, so Sluice picks the
 * first offer uWS will honour as asked and hands uWS only that one, rewritten in plain form; no acceptable
 * offer (or compression off) means plain frames.
 */
import zlib from 'node:zlib';
import uWS from 'uWebSockets.js';
import type { CompressionSpec } from '../config/snapshot.js';
import { formatExtension, parseExtensions, type WsExtension } from './ws-extensions.js';
import type { Tunnel } from './tunnel.js';

const DEDICATED_COMPRESSOR: Readonly<Record<string, number>> = {
  '3KB': uWS.DEDICATED_COMPRESSOR_3KB,
  '4KB': uWS.DEDICATED_COMPRESSOR_4KB,
  '8KB': uWS.DEDICATED_COMPRESSOR_8KB,
  '16KB': uWS.DEDICATED_COMPRESSOR_16KB,
  '32KB': uWS.DEDICATED_COMPRESSOR_32KB,
  '64KB': uWS.DEDICATED_COMPRESSOR_64KB,
  '128KB': uWS.DEDICATED_COMPRESSOR_128KB,
  '256KB': uWS.DEDICATED_COMPRESSOR_256KB,
};
const DECOMPRESSOR: Readonly<Record<string, number>> = {
  shared: uWS.SHARED_DECOMPRESSOR,
  '512B': uWS.DEDICATED_DECOMPRESSOR_512B,
  '1KB': uWS.DEDICATED_DECOMPRESSOR_1KB,
  '2KB': uWS.DEDICATED_DECOMPRESSOR_2KB,
  '4KB': uWS.DEDICATED_DECOMPRESSOR_4KB,
  '8KB': uWS.DEDICATED_DECOMPRESSOR_8KB,
  '16KB': uWS.DEDICATED_DECOMPRESSOR_16KB,
  '32KB': uWS.DEDICATED_DECOMPRESSOR_32KB,
};

/** The `compression` option of the entry point's app.ws(). */
export function uwsCompression(spec: CompressionSpec): number {
  if (spec.mode === 'off') return uWS.DISABLED;
  const compressor = spec.mode === 'shared' ? uWS.SHARED_COMPRESSOR : DEDICATED_COMPRESSOR[spec.dedicatedCompressor]!;
  return compressor | DECOMPRESSOR[spec.decompressor]!;
}

/** uWS's compressor as zlib sees it: window bits and memory level (its DEDICATED_COMPRESSOR_* hold them as
 *  two nibbles; the shared compressor is a 32 KiB window at memory level 8, reset after every message). */
function compressorParams(spec: CompressionSpec): { windowBits: number; memLevel: number } {
  const option = spec.mode === 'dedicated' ? DEDICATED_COMPRESSOR[spec.dedicatedCompressor]! : uWS.DEDICATED_COMPRESSOR_256KB;
  return { windowBits: (option >> 4) & 0xf, memLevel: option & 0xf };
}

/** A window-bits value of an offer: 8 to 15 (RFC 7692 §7.1.2). */
function windowBits(value: string | true): number {
  return value !== true && /^(8|9|1[0-5])$/.test(value) ? Number(value) : -1;
}

/** Whether uWS, set up as `spec`, honours this permessage-deflate offer exactly as the client asked. */
function honoured(offer: WsExtension, spec: CompressionSpec): boolean {
  const seen = new Set<string>();
  for (const [name, value] of offer.params) {
    if (seen.has(name)) return false; // §7: a parameter twice: decline
    seen.add(name);
    switch (name) {
      case 'server_no_context_takeover':
        // A dedicated compressor keeps its window between messages whatever the client asks.
        if (value !== true || spec.mode === 'dedicated') return false;
        break;
      case 'client_no_context_takeover':
        if (value !== true) return false;
        break;
      case 'server_max_window_bits': {
        const bits = windowBits(value);
        if (bits < 0) return false;
        // The shared compressor always uses a 32 KiB window; a dedicated one lowers its own to what is
        // asked, except 8, which zlib cannot do and uWS answers with 9.
        if (spec.mode === 'shared' ? bits < 15 : bits === 8) return false;
        break;
      }
      case 'client_max_window_bits':
        if (value !== true && windowBits(value) < 0) return false;
        break;
      default:
        return false; // §7: a parameter not defined for an offer: decline
    }
  }
  return true;
}

/**
 * The offer to pass to res.upgrade() for a client that sent `header` (its Sec-WebSocket-Extensions) to an
 * app set up as `spec`: the first permessage-deflate offer uWS honours as asked, or '' (plain frames).
 */
export function clientDeflateOffer(header: string, spec: CompressionSpec): string {
  if (spec.mode === 'off' || header === '') return '';
  const offers = parseExtensions(header);
  if (offers === null) return '';
  for (const offer of offers) {
    if (offer.name === 'permessage-deflate' && honoured(offer, spec)) return formatExtension(offer);
  }
  return '';
}

/** Set the tunnel's client-leg compression once its upgrade is decided (`offer` as given to uWS). */
export function startClientCompression(t: Tunnel, offer: string, spec: CompressionSpec): void {
  if (offer === '') return;
  // uWS never compresses an empty message.
  t.compressMin = Math.max(1, spec.threshold);
  const { windowBits, memLevel } = compressorParams(spec);
  t.compressor = (windowBits << 4) | memLevel;
  t.wireRatio = lastRatio;
}

// ---- bytes on the client's wire ---------------------------------------------------------------------

/**
 * uWS compresses inside ws.send() and does not say how big the frame came out, so Sluice measures one
 * compressed message in SAMPLE_EVERY (64, per worker) itself, with zlib set up as uWS's compressor (same
 * library: uWS links the zlib of the Node process), and counts every compressed message of that tunnel at
 * the last ratio measured on it (a new tunnel starts from the worker's last ratio). For `shared` the
 * sample is exactly what uWS sent; for `dedicated` it is an upper bound, as the sample has no context from
 * earlier messages.
 */
const SAMPLE_EVERY = 64;
let countdown = 1;
let lastRatio = 1;

function sampleRatio(compressor: number, payload: Uint8Array): number {
  // Node's only synchronous deflate builds a zlib stream per call (30-65 µs for 2 KiB on the test machine,
  // about uWS's own cost to compress it): at 1 in 64 that is about 1 µs per compressed message.
  const out = zlib.deflateRawSync(payload, { windowBits: compressor >> 4, memLevel: compressor & 0xf, finishFlush: zlib.constants.Z_SYNC_FLUSH });
  // uWS drops the 4-byte sync marker of every message (RFC 7692 §7.2.1).
  return (out.length - 4) / payload.byteLength;
}

/** The bytes a message that uWS compressed for `t` took on the wire (see SAMPLE_EVERY). */
export function compressedWireBytes(t: Tunnel, payload: Uint8Array): number {
  if (--countdown === 0) {
    countdown = SAMPLE_EVERY;
    t.wireRatio = lastRatio = sampleRatio(t.compressor, payload);
  }
  return Math.round(payload.byteLength * t.wireRatio);
}
