/**
 * The Sec-WebSocket-Extensions header as data (RFC 6455 §9.1): a list of extensions, each a name with its
 * parameters, in the order sent. Shared by every feature that negotiates an extension on either leg
 * (permessage-deflate in compression.ts; others, such as GRIP's, beside it), so the grammar is read in one
 * place. Runs once per upgrade, never per message.
 *
 *   extension-list = 1#( token *( ";" token [ "=" ( token / quoted-string ) ] ) )
 */

export interface WsExtension {
  /** Lowercased token. */
  readonly name: string;
  /** Parameters in order; names lowercased, `true` for a parameter without a value. */
  readonly params: readonly (readonly [string, string | true])[];
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Parse one header value (or several joined with ', '); null when it breaks the grammar. '' gives []. */
export function parseExtensions(header: string): WsExtension[] | null {
  const extensions: WsExtension[] = [];
  let at = 0;
  const n = header.length;
  const skipSpace = (): void => {
    while (at < n && (header[at] === ' ' || header[at] === '\t')) at++;
  };
  const token = (): string => {
    const start = at;
    while (at < n && !' \t,;="'.includes(header[at]!)) at++;
    const text = header.slice(start, at);
    return TOKEN.test(text) ? text : '';
  };
  for (;;) {
    skipSpace();
    if (at >= n) break;
    if (header[at] === ',') {
      at++; // empty list elements are allowed (RFC 9110 §5.6.1)
      continue;
    }
    const name = token();
    if (name === '') return null;
    const params: [string, string | true][] = [];
    skipSpace();
    while (at < n && header[at] === ';') {
      at++;
      skipSpace();
      const param = token();
      if (param === '') return null;
      skipSpace();
      let value: string | true = true;
      if (at < n && header[at] === '=') {
        at++;
        skipSpace();
        if (header[at] === '"') {
          let text = '';
          at++;
          while (at < n && header[at] !== '"') {
            if (header[at] === '\\') at++;
            if (at < n) text += header[at++];
          }
          if (at >= n) return null; // unterminated quoted-string
          at++;
          // RFC 6455 §9.1 wants a token once unquoted, but GRIP's message-prefix is `"m:"` or `""`: any
          // quoted-string is read here, and each extension checks its own values (permessage-deflate's
          // in compression.ts and backend-inflate.ts).
          value = text;
        } else {
          value = token();
          if (value === '') return null;
        }
        skipSpace();
      }
      params.push([param.toLowerCase(), value]);
    }
    if (at < n && header[at] !== ',') return null;
    extensions.push({ name: name.toLowerCase(), params });
  }
  return extensions;
}

/** Every Sec-WebSocket-Extensions line of a response head joined into one list ('' when none). */
export function extensionsHeaderOf(raw: readonly (readonly [string, string])[]): string {
  let joined = '';
  for (const [name, value] of raw) {
    if (name.toLowerCase() !== 'sec-websocket-extensions') continue;
    joined = joined === '' ? value : `${joined}, ${value}`;
  }
  return joined;
}

/** The extension as a header value, e.g. `permessage-deflate; client_max_window_bits=10`. */
export function formatExtension(extension: WsExtension): string {
  let text = extension.name;
  for (const [name, value] of extension.params) {
    if (value === true) text += `; ${name}`;
    else text += TOKEN.test(value) ? `; ${name}=${value}` : `; ${name}="${value.replace(/["\\]/g, '\\$&')}"`;
  }
  return text;
}
