/**
 * Pushpin's HTTP publish API as plain functions (no I/O), so every answer can be tested on its own:
 *  - the body of `POST /publish/`, checked as Pushpin checks it (fastly/pushpin src/handler/handlerengine.cpp
 *    controlHttpServer_requestReady, publishitem.cpp, publishformat.cpp), with Pushpin's error texts: a
 *    body with any invalid item is refused whole, so a 400 never publishes part of it;
 *  - the publisher's JWT: `Authorization: Bearer <jwt>`, HS256 with the configured key, as @fanoutio/grip
 *    signs it (claims `iss` and `exp`, which must not have passed);
 *  - Accept negotiation (text/plain or application/json, else 406).
 * Only `ws-message` formats reach subscribers; `http-response` and `http-stream` are checked and accepted
 * (a GRIP publisher often sends all three) but Sluice holds no HTTP subscribers.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { FanoutKind, type Publication } from '../shared/fanout-wire.js';

export type Parsed = { readonly ok: true; readonly items: Publication[] } | { readonly ok: false; readonly error: string };

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

class Invalid extends Error {}

/** Pushpin's getString: absent is fine unless required; present must be a string. */
function optionalString(object: Json, owner: string, key: string, required = false): string | undefined {
  if (!Object.hasOwn(object, key)) {
    if (required) throw new Invalid(`${owner} does not contain '${key}'`);
    return undefined;
  }
  const value = object[key];
  if (typeof value !== 'string') throw new Invalid(`${owner} contains '${key}' with wrong type`);
  return value;
}

function base64(text: string, owner: string, key: string): Buffer {
  const normal = text.replaceAll('-', '+').replaceAll('_', '/').replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(normal)) throw new Invalid(`${owner} contains '${key}' with invalid value`);
  return Buffer.from(normal, 'base64');
}

const FORMATS = ['http-response', 'http-stream', 'ws-message'] as const;
const EMPTY = new Uint8Array(0);
const WS_TYPES: Readonly<Record<string, FanoutKind>> = { text: FanoutKind.Text, binary: FanoutKind.Binary, ping: FanoutKind.Ping, pong: FanoutKind.Pong };

/** One item's ws-message format as a publication, or null when it has none (or only a hint). */
function wsMessage(format: unknown, channel: string, receivedAt: number): Publication | null {
  const owner = "'ws-message'";
  if (!isObject(format)) throw new Invalid(`${owner} is not an object`);
  const action = optionalString(format, owner, 'action') ?? 'send';
  if (action === 'hint' || action === 'refresh') return null;
  if (action === 'close') {
    let code = 0;
    if (Object.hasOwn(format, 'code')) {
      const value = format.code;
      if (typeof value !== 'number' || !Number.isInteger(value)) throw new Invalid(`${owner} contains 'code' with wrong type`);
      if (value < 0) throw new Invalid(`${owner} contains 'code' with invalid value`);
      code = value;
    }
    const reason = optionalString(format, owner, 'reason') ?? '';
    return { channel, kind: FanoutKind.Close, payload: EMPTY, code, reason, receivedAt };
  }
  if (action !== 'send') throw new Invalid(`${owner} contains 'action' with unknown value`);
  const type = optionalString(format, owner, 'type');
  let kind: FanoutKind | 0 = 0;
  if (type !== undefined) {
    const named = Object.hasOwn(WS_TYPES, type) ? WS_TYPES[type] : undefined;
    if (named === undefined) throw new Invalid(`${owner} contains 'type' with unknown value`);
    kind = named;
  }
  let payload: Uint8Array;
  if (Object.hasOwn(format, 'content-bin')) {
    const text = format['content-bin'];
    if (typeof text !== 'string') throw new Invalid(`${owner} contains 'content-bin' with wrong type`);
    payload = base64(text, owner, 'content-bin');
    if (kind === 0) kind = FanoutKind.Binary;
  } else if (Object.hasOwn(format, 'content')) {
    const text = format.content;
    if (typeof text !== 'string') throw new Invalid(`${owner} contains 'content' with wrong type`);
    payload = Buffer.from(text, 'utf8');
    if (kind === 0) kind = FanoutKind.Text;
  } else if (kind === FanoutKind.Ping || kind === FanoutKind.Pong) {
    payload = EMPTY;
  } else throw new Invalid(`${owner} does not contain 'content' or 'content-bin'`);
  if ((kind === FanoutKind.Ping || kind === FanoutKind.Pong) && payload.byteLength > 125) throw new Invalid(`${owner} contains 'content' with invalid value`);
  return { channel, kind: kind as FanoutKind, payload, code: 0, reason: '', receivedAt };
}


function item(value: unknown, receivedAt: number): Publication | null {
  const owner = 'publish item object';
  if (!isObject(value)) throw new Invalid(`${owner} is not an object`);
  const channel = optionalString(value, owner, 'channel', true)!;
  optionalString(value, owner, 'id');
  optionalString(value, owner, 'prev-id');
  let formats: Json;
  if (Object.hasOwn(value, 'formats')) {
    if (!isObject(value.formats)) throw new Invalid(`${owner} contains 'formats' with wrong type`);
    formats = value.formats;
  } else {
    // Pushpin also reads the formats from the item itself.
    formats = {};
    for (const name of FORMATS) if (Object.hasOwn(value, name)) formats[name] = value[name];
  }
  if (!FORMATS.some((name) => Object.hasOwn(formats, name))) throw new Invalid('no formats specified');
  for (const name of ['http-response', 'http-stream'] as const) {
    if (Object.hasOwn(formats, name) && !isObject(formats[name])) throw new Invalid(`'${name}' is not an object`);
  }
  return Object.hasOwn(formats, 'ws-message') ? wsMessage(formats['ws-message'], channel, receivedAt) : null;
}

/** A publish body: its ws-message publications (in order), or Pushpin's error text (without "\n"). */
export function parsePublishBody(body: string, receivedAt: number): Parsed {
  let document: unknown;
  try {
    document = JSON.parse(body);
  } catch {
    return { ok: false, error: 'Body is not valid JSON.' };
  }
  if (!isObject(document)) return { ok: false, error: 'Invalid format.' };
  if (!Object.hasOwn(document, 'items')) return { ok: false, error: "Invalid format: object does not contain 'items'" };
  if (!Array.isArray(document.items)) return { ok: false, error: "Invalid format: object contains 'items' with wrong type" };
  const items: Publication[] = [];
  try {
    for (const value of document.items) {
      const publication = item(value, receivedAt);
      if (publication !== null) items.push(publication);
    }
  } catch (error) {
    if (error instanceof Invalid) return { ok: false, error: `Invalid format: ${error.message}` };
    throw error;
  }
  return { ok: true, items };
}

// ---- authentication ---------------------------------------------------------------------------------

function base64url(bytes: Buffer): string {
  return bytes.toString('base64').replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

/**
 * Check `authorization` (the header) against `key`: null when the request may publish, else why not (for
 * the 401 body). The JWT must be HS256, signed with `key`, and carry an `exp` that has not passed (as
 * Pushpin's own Grip-Sig check demands); `nbf`, when present, must have come.
 */
export function checkAuthorization(authorization: string | undefined, key: Buffer, nowSeconds = Date.now() / 1000): string | null {
  if (authorization === undefined || authorization === '') return 'missing bearer token (expected Authorization: Bearer <JWT>)';
  const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
  if (match === null) return 'expected Authorization: Bearer <JWT>';
  const parts = match[1]!.split('.');
  if (parts.length !== 3) return 'token is not a JWT';
  let header: unknown;
  let claims: unknown;
  try {
    header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
  } catch {
    return 'token is not a JWT';
  }
  if (!isObject(header) || header.alg !== 'HS256') return 'token is not signed with HS256';
  const expected = Buffer.from(base64url(createHmac('sha256', key).update(`${parts[0]}.${parts[1]}`).digest()));
  const given = Buffer.from(parts[2]!);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid token signature';
  if (!isObject(claims)) return 'token claims are not an object';
  if (typeof claims.exp !== 'number') return "token has no 'exp' claim";
  if (claims.exp <= nowSeconds) return 'token has expired';
  if (typeof claims.nbf === 'number' && claims.nbf > nowSeconds + 60) return 'token is not valid yet';
  return null;
}

/** The response type Accept asks for: Pushpin's rule (text/plain by default), or null for 406. */
export function responseType(accept: string | undefined): 'text/plain' | 'application/json' | null {
  if (accept === undefined || accept.trim() === '') return 'text/plain';
  let chosen: 'text/plain' | 'application/json' | null = null;
  for (const part of accept.split(',')) {
    const type = part.split(';')[0]!.trim().toLowerCase();
    if (type === 'text/plain' || type === 'text/*' || type === '*/*' || type === '*') chosen = 'text/plain';
    else if (type === 'application/json' || type === 'application/*') chosen = 'application/json';
  }
  return chosen;
}
