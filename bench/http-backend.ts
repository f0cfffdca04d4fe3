/**
 * The bench's plain HTTP backends: uWebSockets.js on one or more ports in one process (pinned with the load
 * generator, so a slow backend does not pass for a slow proxy), answering `/http/small` with 13 bytes and
 * `/http/1mib` with one MiB, both with a Content-Length and keep-alive.
 *
 *   node dist/bench/http-backend.js --ports 9101,9102,9103
 */
import uWS from 'uWebSockets.js';
import { pathToFileURL } from 'node:url';

const SMALL = Buffer.from('hello, world\n');
const ONE_MIB = Buffer.alloc(1024 * 1024, 'x');

/** One more port of these backends in this process (bench/uws-alone.ts uses it too); resolves to the bound port. */
export function listenHttpBackend(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const app = uWS.App();
    app.get('/http/small', (res) => {
      res.end(SMALL);
    });
    app.get('/http/1mib', (res) => {
      // tryEnd with onWritable: the 1 MiB body goes out at the client's pace without copying it per request.
      let aborted = false;
      res.onAborted(() => (aborted = true));
      const base = res.getWriteOffset();
      const [, done] = res.tryEnd(ONE_MIB, ONE_MIB.length);
      if (done) return;
      res.onWritable((offset) => {
        if (aborted) return true;
        const [ok] = res.tryEnd(ONE_MIB.subarray(offset - base), ONE_MIB.length);
        return ok;
      });
    });
    app.any('/*', (res) => {
      res.writeStatus('404 Not Found').end('not found\n');
    });
    app.listen('127.0.0.1', port, (socket) => {
      if (!socket) reject(new Error(`http backend: cannot listen on 127.0.0.1:${port}`));
      else resolve(uWS.us_socket_local_port(socket as unknown as uWS.us_socket));
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const at = process.argv.indexOf('--ports');
  const ports = at < 0 ? [0] : (process.argv[at + 1] ?? '0').split(',').map(Number);
  for (const port of ports) await listenHttpBackend(port);
}
