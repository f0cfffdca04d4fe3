/**
 * A fast WebSocket echo backend on uWebSockets.js, listening on one or more ports in one process.
 * The bench, the load tests and the quick start's demo pool all use it. Every message comes back
 * as it came (text stays text, binary stays binary); `GET /` names the port that answered, so a
 * user can see balancing at work with plain curl.
 *
 *   node dist/loadtest/echo-backend.js --ports 9001,9002,9003 [--host 127.0.0.1]
 */
import uWS from 'uWebSockets.js';
import { pathToFileURL } from 'node:url';

export interface EchoBackend {
  readonly ports: readonly number[];
  close(): void;
}

/** Start echo listeners; port 0 picks a free port. Resolves once every port listens. */
export function startEchoBackends(ports: readonly number[], host = '127.0.0.1'): Promise<EchoBackend> {
  const listenSockets: uWS.us_listen_socket[] = [];
  const bound: number[] = [];
  const start = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      let boundPort = port;
      const app = uWS.App();
      app.ws('/*', {
        maxPayloadLength: 64 * 1024 * 1024,
        maxBackpressure: 64 * 1024 * 1024,
        idleTimeout: 0,
        message: (ws, message, isBinary) => {
          ws.send(message, isBinary);
        },
      });
      app.any('/*', (res) => {
        res.end(`sluice demo backend on port ${boundPort}\n`);
      });
      app.listen(host, port, (listenSocket) => {
        if (!listenSocket) {
          reject(new Error(`echo backend: cannot listen on ${host}:${port}`));
          return;
        }
        listenSockets.push(listenSocket);
        boundPort = uWS.us_socket_local_port(listenSocket as unknown as uWS.us_socket);
        bound.push(boundPort);
        resolve();
      });
    });
  return (async () => {
    for (const port of ports) await start(port);
    return {
      ports: bound,
      close() {
        for (const s of listenSockets) uWS.us_listen_socket_close(s);
        listenSockets.length = 0;
      },
    };
  })();
}

function parseArgs(argv: readonly string[]): { ports: number[]; host: string } {
  let ports = [9001, 9002, 9003];
  let host = '127.0.0.1';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (arg === '--ports' && value !== undefined) {
      ports = value.split(',').map((p) => Number(p));
      i++;
    } else if (arg === '--host' && value !== undefined) {
      host = value;
      i++;
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: echo-backend [--ports 9001,9002,9003] [--host 127.0.0.1]\n');
      process.exit(0);
    } else {
      process.stderr.write(`echo-backend: unknown option '${arg}' (expected --ports or --host)\n`);
      process.exit(2);
    }
  }
  for (const p of ports) {
    if (!Number.isInteger(p) || p < 0 || p > 65535) {
      process.stderr.write(`echo-backend: invalid port '${p}' (expected 0-65535)\n`);
      process.exit(2);
    }
  }
  return { ports, host };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { ports, host } = parseArgs(process.argv.slice(2));
  startEchoBackends(ports, host).then(
    (backend) => {
      process.stdout.write(`echo backends listening on ${backend.ports.map((p) => `${host}:${p}`).join(', ')}\n`);
      const stop = (): void => {
        backend.close();
        process.exit(0);
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    },
    (err: Error) => {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    },
  );
}
