/**
 * A fast WebSocket echo backend on uWebSockets.js, listening on one or more ports in one process.
 * The bench, the load tests and the quick start's demo pool all use it. Every message comes back
 * as it came (text stays text, binary stays binary); `GET /` names the port that answered, so a
 * user can see balancing at work with plain curl. With --push-interval it is also a broadcaster, for
 * the load generator's `receive` scenario: every interval it publishes one timestamped text message to
 * every connection on that port (uWS pub/sub, framed once), `{"sentAt":<Unix ms>,"seq":N,"pad":"…"}`.
 *
 *   node dist/loadtest/echo-backend.js --ports 9001,9002,9003 [--host 127.0.0.1]
 *                                      [--push-interval MS] [--push-size BYTES]
 */
import uWS from 'uWebSockets.js';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

export interface EchoBackend {
  readonly ports: readonly number[];
  close(): void;
}

export interface PushOptions {
  /** Publish one message to every connection this often (0: never). */
  readonly pushIntervalMs?: number;
  /** Bytes per pushed message, padded; never less than the stamp itself needs. */
  readonly pushSize?: number;
}

/** Smallest push: `{"sentAt":1733060000123.456,"seq":0,"pad":""}` and room for a long seq. */
export const MIN_PUSH_SIZE = 64;

/** A push message of `size` bytes: the send time as Unix milliseconds first, so the receiver can read it. */
export function pushMessage(seq: number, size: number): string {
  const head = `{"sentAt":${(performance.timeOrigin + performance.now()).toFixed(3)},"seq":${seq},"pad":"`;
  return `${head}${'x'.repeat(Math.max(0, size - head.length - 2))}"}`;
}

/** Start echo listeners; port 0 picks a free port. Resolves once every port listens. */
export function startEchoBackends(ports: readonly number[], host = '127.0.0.1', push: PushOptions = {}): Promise<EchoBackend> {
  const listenSockets: uWS.us_listen_socket[] = [];
  const timers: NodeJS.Timeout[] = [];
  const bound: number[] = [];
  const pushEvery = push.pushIntervalMs ?? 0;
  const pushSize = Math.max(MIN_PUSH_SIZE, push.pushSize ?? MIN_PUSH_SIZE);
  const start = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      let boundPort = port;
      const app = uWS.App();
      app.ws('/*', {
        maxPayloadLength: 64 * 1024 * 1024,
        maxBackpressure: 64 * 1024 * 1024,
        idleTimeout: 0,
        open: (ws) => {
          if (pushEvery > 0) ws.subscribe('push');
        },
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
        if (pushEvery > 0) {
          let seq = 0;
          timers.push(setInterval(() => app.publish('push', pushMessage(seq++, pushSize), false), pushEvery));
        }
        resolve();
      });
    });
  return (async () => {
    for (const port of ports) await start(port);
    return {
      ports: bound,
      close() {
        for (const timer of timers) clearInterval(timer);
        timers.length = 0;
        for (const s of listenSockets) uWS.us_listen_socket_close(s);
        listenSockets.length = 0;
      },
    };
  })();
}

function parseArgs(argv: readonly string[]): { ports: number[]; host: string; push: PushOptions } {
  let ports = [9001, 9002, 9003];
  let host = '127.0.0.1';
  let pushIntervalMs = 0;
  let pushSize = MIN_PUSH_SIZE;
  const usage = 'usage: echo-backend [--ports 9001,9002,9003] [--host 127.0.0.1] [--push-interval MS] [--push-size BYTES]\n';
  const fail = (message: string): never => {
    process.stderr.write(`echo-backend: ${message}\n`);
    process.exit(2);
  };
  const count = (name: string, value: string, min: number): number => {
    if (!/^\d+$/.test(value) || Number(value) < min) fail(`invalid ${name} '${value}' (expected a whole number of at least ${min})`);
    return Number(value);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (arg === '--ports' && value !== undefined) {
      ports = value.split(',').map((p) => Number(p));
      i++;
    } else if (arg === '--host' && value !== undefined) {
      host = value;
      i++;
    } else if (arg === '--push-interval' && value !== undefined) {
      pushIntervalMs = count(arg, value, 1);
      i++;
    } else if (arg === '--push-size' && value !== undefined) {
      pushSize = count(arg, value, MIN_PUSH_SIZE);
      i++;
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write(usage);
      process.exit(0);
    } else {
      fail(`unknown option '${arg}' (expected --ports, --host, --push-interval or --push-size)`);
    }
  }
  for (const p of ports) {
    if (!Number.isInteger(p) || p < 0 || p > 65535) fail(`invalid port '${p}' (expected 0-65535)`);
  }
  return { ports, host, push: { pushIntervalMs, pushSize } };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { ports, host, push } = parseArgs(process.argv.slice(2));
  startEchoBackends(ports, host, push).then(
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
