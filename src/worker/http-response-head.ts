/**
 * A backend's HTTP/1.1 response head, parsed in place in the bytes it arrived in, for http-native-client.ts:
 * where the head ends, then the status line and the header fields, with what decides how the body is framed
 * and whether the connection may be kept. Strict where RFC 9112 is (CRLF line ends, no obs-fold, no space
 * before a colon, one Content-Length value), lenient where llhttp is (a status line without a reason).
 *
 * The result goes into one module-level object, overwritten by each parse: a head is acted on before the next
 * one is parsed, so no object is made per response beyond its header list.
 */

const HTTP_1_ = Buffer.from('HTTP/1.');
const CR = 13;
const LF = 10;

export interface ResponseHead {
  status: number;
  statusText: string;
  /** HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`. */
  keepAlive: boolean;
  /** Content-Length, -1 when absent. */
  length: number;
  /** A Transfer-Encoding was given (the body is then framed by it, or ends at close). */
  encoded: boolean;
  /** ... and its last coding is chunked. */
  chunked: boolean;
  /** Lowercase name (string), value (bytes as sent, a view of the parsed buffer), name, value… */
  raw: (string | Buffer)[];
}

/** The last head parseResponseHead took apart. */
export const responseHead: ResponseHead = { status: 0, statusText: '', keepAlive: false, length: -1, encoded: false, chunked: false, raw: [] };

/** The offset just after the blank line ending a head in `b[start, end)`, or -1 when it has not come yet. */
export function findHeadEnd(b: Buffer, start: number, end: number): number {
  let p = start;
  for (;;) {
    const lf = b.indexOf(LF, p);
    if (lf < 0 || lf >= end) return -1;
    // A line that is just CRLF (after the status line) ends the head.
    if (lf > start && b[lf - 1] === CR && lf - 2 >= start && b[lf - 2] === LF) return lf + 1;
    p = lf + 1;
  }
}

/**
 * Parse the complete head `b[start, end)` (end is findHeadEnd's answer) into `responseHead`. Returns '' when
 * it is a valid head, else llhttp's code for what is wrong (http-failures.ts counts any HPE_ code as an
 * invalid answer).
 */
export function parseResponseHead(b: Buffer, start: number, end: number): string {
  // Status line: HTTP/1.x NNN[ reason] (the space before an empty reason may be missing, as llhttp allows)
  const lineEnd = b.indexOf(LF, start);
  if (lineEnd - start < 13 || b[lineEnd - 1] !== CR || HTTP_1_.compare(b, start, start + 7) !== 0 || b[start + 8] !== 32) return 'HPE_INVALID_CONSTANT';
  const minor = b[start + 7]!;
  if (minor !== 0x30 && minor !== 0x31) return 'HPE_INVALID_VERSION';
  const d0 = b[start + 9]! - 0x30;
  const d1 = b[start + 10]! - 0x30;
  const d2 = b[start + 11]! - 0x30;
  if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9 || (b[start + 12] !== 32 && start + 12 !== lineEnd - 1)) return 'HPE_INVALID_STATUS';
  const head = responseHead;
  head.status = d0 * 100 + d1 * 10 + d2;
  head.statusText = start + 13 < lineEnd - 1 ? b.toString('latin1', start + 13, lineEnd - 1) : '';
  head.keepAlive = minor === 0x31;
  head.length = -1;
  head.chunked = false;
  head.encoded = false;
  // A fresh list: the handler keeps it until it has written the head (http-proxy.ts responseHeaders_).
  const raw: (string | Buffer)[] = (head.raw = []);
  let p = lineEnd + 1;
  while (p < end - 2) {
    const lf = b.indexOf(LF, p);
    if (b[lf - 1] !== CR) return 'HPE_LF_EXPECTED';
    const colon = b.indexOf(58, p);
    if (colon < 0 || colon > lf || colon === p || b[colon - 1] === 32 || b[p] === 32 || b[p] === 9) return 'HPE_INVALID_HEADER_TOKEN';
    const name = b.toString('latin1', p, colon).toLowerCase();
    let v = colon + 1;
    let vEnd = lf - 1;
    while (v < vEnd && (b[v] === 32 || b[v] === 9)) v++;
    while (vEnd > v && (b[vEnd - 1] === 32 || b[vEnd - 1] === 9)) vEnd--;
    const value = b.subarray(v, vEnd);
    raw.push(name, value);
    p = lf + 1;
    if (name.length === 14 && name === 'content-length') {
      const text = value.toString('latin1');
      if (!/^\d{1,15}$/.test(text) || (head.length >= 0 && Number(text) !== head.length)) return 'HPE_INVALID_CONTENT_LENGTH';
      head.length = Number(text);
    } else if (name.length === 17 && name === 'transfer-encoding') {
      head.encoded = true;
      head.chunked = /(^|,)\s*chunked\s*$/i.test(value.toString('latin1'));
    } else if (name.length === 10 && name === 'connection') {
      const tokens = value.toString('latin1').toLowerCase();
      if (/(^|,)\s*close\s*(,|$)/.test(tokens)) head.keepAlive = false;
      else if (minor === 0x30 && /(^|,)\s*keep-alive\s*(,|$)/.test(tokens)) head.keepAlive = true;
    }
  }
  return '';
}
