/**
 * Sec-WebSocket-Extensions (RFC 6455 §9.1, RFC 7692 §5): parse a header value into extensions with their
 * parameters, and write them back. Shared by everything that negotiates an extension on the upgrade
 * (GRIP's `grip; message-prefix="m:"` in fanout-grip.ts, permessage-deflate), so each takes its own out
 * of the list and the rest is judged once. Runs once per upgrade, never per message.
 */

export interface WsExtension {
  readonly name: string;
  /** Parameter name (lowercase) → value; '' for a parameter given without a value. */
  readonly params: Map<string, string>;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Split `text` at `separator`, except inside quoted strings. */
function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === separator) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

/** Every extension of one or more header values (joined with ','), in order; null when malformed. */
export function parseExtensions(header: string): WsExtension[] | null {
  const out: WsExtension[] = [];
  for (const item of splitOutsideQuotes(header, ',')) {
    if (item.trim() === '') continue; // RFC 9110 list syntax allows empty elements
    const [rawName, ...rawParams] = splitOutsideQuotes(item, ';');
    const name = rawName!.trim().toLowerCase();
    if (!TOKEN.test(name)) return null;
    const params = new Map<string, string>();
    for (const rawParam of rawParams) {
      const eq = rawParam.indexOf('=');
      const key = (eq < 0 ? rawParam : rawParam.slice(0, eq)).trim().toLowerCase();
      if (!TOKEN.test(key)) return null;
      let value = eq < 0 ? '' : rawParam.slice(eq + 1).trim();
      if (value.startsWith('"')) {
        if (value.length < 2 || !value.endsWith('"')) return null;
        value = value.slice(1, -1).replace(/\\(.)/g, '$1');
      } else if (eq >= 0 && !TOKEN.test(value)) return null;
      params.set(key, value);
    }
    out.push({ name, params });
  }
  return out;
}

/** One extension as a header element; values that are not tokens are quoted. */
export function formatExtension(extension: WsExtension): string {
  let text = extension.name;
  for (const [key, value] of extension.params) {
    if (value === '') text += `; ${key}`;
    else text += TOKEN.test(value) ? `; ${key}=${value}` : `; ${key}="${value.replace(/["\\]/g, '\\$&')}"`;
  }
  return text;
}
