/**
 * The bench's "uWS.js alone" target: uWebSockets.js doing a row's work itself, with no backend behind it, in
 * one process pinned where a proxy would be. WebSocket messages are echoed by the same echo app the bench's
 * backends run (loadtest/echo-backend.ts), HTTP requests are answered by the bench's HTTP backend routes
 * (http-backend.ts). Its CPU per round trip, per request and per upgrade is what the runtime Sluice is built
 * on costs before any proxying: a floor under Sluice's figures, shown beside the proxies' in the same run.
 *
 *   node dist/bench/uws-alone.js WS_PORT HTTP_PORT
 */
import { startEchoBackends } from '../loadtest/echo-backend.js';
import { listenHttpBackend } from './http-backend.js';

const wsPort = Number(process.argv[2]);
const httpPort = Number(process.argv[3]);
if (!Number.isInteger(wsPort) || !Number.isInteger(httpPort)) {
  process.stderr.write('usage: uws-alone.js WS_PORT HTTP_PORT\n');
  process.exit(2);
}
await startEchoBackends([wsPort]);
await listenHttpBackend(httpPort);
process.stdout.write(`uWS.js alone listening: ws on ${wsPort}, http on ${httpPort}\n`);
