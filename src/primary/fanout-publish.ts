/**
 * The publish listener (fanout.publish.address, default 127.0.0.1:5561): Pushpin's HTTP control API on the
 * primary, apart from the entry points, so GRIP publishers (e.g. @fanoutio/grip's Publisher with
 * `control_uri: 'http://127.0.0.1:5561/'`) work unchanged. `POST /publish/` with a JWT (HS256 under
 * fanout.publish.key) publishes; answers and error texts are Pushpin's (publish-api.ts). The body is read
 * up to fanout.publish.maxBodySize and refused whole beyond it, so a publisher cannot make Sluice buffer
 * without bound.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { isLoopback } from '../config/compile-fanout.js';
import type { FanoutSettings } from '../config/snapshot.js';
import type { FanoutHub } from './fanout-hub.js';
import { log } from './log.js';
import { checkAuthorization, parsePublishBody, responseType } from './publish-api.js';

function respond(res: http.ServerResponse, status: number, body: string, type = 'text/plain', headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** Open the publish listener; resolves with the server, or null (logged) when the address cannot be opened. */
export function startPublishListener(settings: FanoutSettings, hub: FanoutHub): Promise<http.Server | null> {
  const key = Buffer.from(settings.keyBase64, 'base64');
  const open = key.length === 0 && isLoopback(settings.publishHost);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
    const type = responseType(req.headers.accept);
    if (type === null) {
      respond(res, 406, 'Not Acceptable. Supported formats are text/plain and application/json.\n');
      req.resume();
      return;
    }
    if (trimmed !== '/publish') {
      respond(res, trimmed === '/' ? 200 : 404, trimmed === '/' ? 'Sluice publish API (Pushpin-compatible)\n' : 'Not Found\n');
      req.resume();
      return;
    }
    if (req.method !== 'POST') {
      respond(res, 405, `Method not allowed: ${req.method}.\n`, 'text/plain', { allow: 'POST' });
      req.resume();
      return;
    }
    if (!open) {
      const refused = key.length === 0 ? 'no publish key is configured (fanout.publish.key)' : checkAuthorization(req.headers.authorization, key);
      if (refused !== null) {
        respond(res, 401, `Unauthorized: ${refused}.\n`, 'text/plain', { 'www-authenticate': 'Bearer' });
        req.resume();
        return;
      }
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > settings.maxBodySize) {
      respond(res, 413, `Request body too large (at most ${settings.maxBodySize} bytes).\n`, 'text/plain', { connection: 'close' });
      req.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let length = 0;
    req.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length > settings.maxBodySize) {
        respond(res, 413, `Request body too large (at most ${settings.maxBodySize} bytes).\n`, 'text/plain', { connection: 'close' });
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (length > settings.maxBodySize) return;
      const parsed = parsePublishBody(Buffer.concat(chunks, length).toString('utf8'), performance.timeOrigin + performance.now());
      if (!parsed.ok) {
        respond(res, 400, `${parsed.error}\n`);
        return;
      }
      hub.take(parsed.items, 'http');
      respond(res, 200, type === 'application/json' ? '{"message":"Published"}\n' : 'Published\n', type);
    });
    req.on('error', () => undefined);
  });
  server.keepAliveTimeout = 30_000;
  return new Promise((resolve) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      log.error(`fan-out: cannot open the publish listener on ${settings.publishHost || '*'}:${settings.publishPort}: ${error.code ?? error.message}`);
      resolve(null);
    });
    server.listen({ host: settings.publishHost === '' ? undefined : settings.publishHost, port: settings.publishPort }, () => {
      server.removeAllListeners('error');
      server.on('error', (error) => log.error(`fan-out: publish listener: ${error.message}`));
      if (open) log.warn(`fan-out: the publish listener on ${settings.publishHost}:${settings.publishPort} takes publications without authentication (loopback only, no fanout.publish.key)`);
      resolve(server);
    });
  });
}
