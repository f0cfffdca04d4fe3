/**
 * Edits that middlewares make to the response headers (customResponseHeaders, CORS, security headers,
 * forwardAuth's cookies), recorded while the chain runs and applied, in order, to whatever answer goes back
 * to the client: the backend's, a middleware's own, or Sluice's error.
 */

const SET = 0;
const ADD = 1;
const REMOVE = 2;

/** A response header as it will be written: lowercase name, value as text or as the backend's bytes. */
export type HeaderPair = [name: string, value: string | Uint8Array];

export class ResponseHeaders {
  /** Flat: op, lowercase name, value. */
  private readonly ops: (number | string)[] = [];

  /** Replace the header; an empty value removes it (Traefik's customResponseHeaders). */
  set(name: string, value: string): void {
    if (value === '') this.ops.push(REMOVE, name, '');
    else this.ops.push(SET, name, value);
  }

  add(name: string, value: string): void {
    this.ops.push(ADD, name, value);
  }

  remove(name: string): void {
    this.ops.push(REMOVE, name, '');
  }

  get empty(): boolean {
    return this.ops.length === 0;
  }

  /** Apply the edits to `headers` (lowercase names), in place. */
  apply(headers: HeaderPair[]): HeaderPair[] {
    const ops = this.ops;
    for (let i = 0; i < ops.length; i += 3) {
      const op = ops[i] as number;
      const name = ops[i + 1] as string;
      if (op !== ADD) {
        let kept = 0;
        for (const pair of headers) if (pair[0] !== name) headers[kept++] = pair;
        headers.length = kept;
      }
      if (op !== REMOVE) headers.push([name, ops[i + 2] as string]);
    }
    return headers;
  }
}
