/**
 * Entry point of a worker thread: builds the routing table and balancers from the snapshot, opens
 * every entry point, and serves until the primary asks it to drain.
 *
 * A worker must close every uWS socket before its thread ends: Node aborts the whole process if a
 * thread exits while uWS still has a handle in its loop. So an uncaught exception here is caught,
 * reported, and turned into a fast drain, after which the primary starts a replacement.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { PrimaryToWorker, WorkerInit, WorkerToPrimary } from '../shared/messages.js';
import { attachShared, Total, TOTALS } from '../shared/layout.js';
import { applyAddresses, initBackendPools } from './backend-pool.js';
import { drainBackend } from './drain.js';
import { initContext } from './context.js';
import { RouterTable } from './router-table.js';
import { startListeners, closeListeners, closeAllConnections } from './listeners.js';
import { backendSockets } from './backend-socket.js';
import { destroyAllNative, nativeConnections } from './native-leg.js';
import { tunnels } from './tunnel.js';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { initMetrics, closeStartedBy, Side } from './metrics.js';
import { initAccessLog, flushAccessLog } from './access-log.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const shared = attachShared(init.sharedBuffer, init.backendSlots, init.workerSlots, init.slabFloats);
const ctx = initContext(init.workerIndex, init.snapshot, shared);
initMetrics(ctx);
initAccessLog(init.snapshot, (records) => port.postMessage({ type: 'access-log', records } satisfies WorkerToPrimary, [records.buffer as ArrayBuffer]));
const table = new RouterTable(init.snapshot.routers, init.snapshot.entryPoints.length);
const balancers = initBackendPools(init.snapshot, shared, (backend) => post({ type: 'backend-failed', backend }));

function post(message: WorkerToPrimary): void {
  port.postMessage(message);
}

const heartbeatAt = init.workerIndex * TOTALS + Total.Heartbeat;
const lagAt = init.workerIndex * TOTALS + Total.EventLoopLag;
// Event-loop delay sampled every 10 ms by libuv's timer (no JS per sample); each second the 99th percentile
// beyond the sampling interval is published with the heartbeat (the maximum would report one GC pause or
// a busy neighbour on a shared host as lag). A loop stuck for longer stops the heartbeat itself, which
// the primary turns into lag (metrics-store.ts workerLag).
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
shared.workerTotals[heartbeatAt] = Date.now();
const heartbeat = setInterval(() => {
  shared.workerTotals[heartbeatAt] = Date.now();
  shared.workerTotals[lagAt] = loopDelay.count > 0 ? Math.max(0, loopDelay.percentile(99) / 1e9 - 0.01) : 0;
  loopDelay.reset();
}, 1000);

let draining = false;

const listeners = startListeners(table, balancers, (failed) => {
  if (failed.length > 0) {
    post({ type: 'listen-failed', addresses: failed });
    // Listen callbacks can run inside startListeners(), before `listeners` is assigned.
    setImmediate(() => drain(0));
  } else post({ type: 'listening' });
});

/** Stop accepting; close clients with 1001 (their backends get the close too); force what is left
 *  after graceMs; then end the thread by letting its loop run dry. */
function drain(graceMs: number): void {
  if (draining) return;
  draining = true;
  ctx.shuttingDown = true;
  closeListeners(listeners);
  for (const t of tunnels()) {
    closeStartedBy(t, Side.Proxy, 1001);
    t.ws?.end(1001, 'Sluice is shutting down');
  }
  const deadline = Date.now() + graceMs;
  let forced = false;
  const check = setInterval(() => {
    // Done when every client is gone and every backend socket closed (including those still
    // waiting for a backend's close reply, and those of upgrades in flight).
    const busy = tunnels().size > 0 || backendSockets().size > 0 || nativeConnections() > 0;
    if (busy && Date.now() < deadline) return;
    if (busy && !forced) {
      forced = true;
      for (const t of tunnels()) t.ws?.close();
      for (const socket of backendSockets()) socket.destroy();
      destroyAllNative();
      closeAllConnections(listeners);
      return;
    }
    // A destroyed socket's fd is closed only when its 'close' event has run: a thread that ends
    // before that leaks the connection (the backend never sees it end). Give them a moment.
    if (backendSockets().size > 0 && Date.now() < deadline + 1000) return;
    closeAllConnections(listeners);
    clearInterval(check);
    clearInterval(heartbeat);
    loopDelay.disable();
    flushAccessLog();
    port.close();
  }, 20);
}

port.on('message', (message: PrimaryToWorker) => {
  if (message.type === 'shutdown') drain(message.graceMs);
  else if (message.type === 'fault') injectFault(message.kind, message.ms ?? 0);
  else if (message.type === 'backend-addresses') applyAddresses(message.addresses);
  else if (message.type === 'drain-backend' && !draining) drainBackend(message.backend, message.windowMs, message.reason, message.untilUp);
});

function injectFault(kind: 'throw' | 'block', ms: number): void {
  if (kind === 'block') {
    const until = Date.now() + ms;
    while (Date.now() < until);
    return;
  }
  setImmediate(() => {
    throw new Error(`injected fault in worker ${init.workerIndex}`);
  });
}

process.on('uncaughtException', (error) => {
  post({ type: 'crashed', message: error.message, stack: error.stack ?? '' });
  process.exitCode = 1;
  drain(0);
});
