/**
 * Entry point of a worker thread: installs the config generation it is given, opens every entry point,
 * takes newer generations as the primary reloads (connections keep the generation they started in), and
 * serves until the primary asks it to stop.
 *
 * A worker must close every uWS socket before its thread ends: Node aborts the whole process if a
 * thread exits while uWS still has a handle in its loop. So an uncaught exception here is caught,
 * reported, and turned into a fast drain, after which the primary starts a replacement.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { EntryPointStop, GenerationInit, PrimaryToWorker, WorkerInit, WorkerToPrimary } from '../shared/messages.js';
import { attachShared, Total, TOTALS } from '../shared/layout.js';
import { adoptAddresses, applyAddresses } from './backend-addresses.js';
import { drainBackend } from './drain.js';
import { context, initContext } from './context.js';
import { Generation } from './generation.js';
import { ListenerSet } from './listeners.js';
import { backendConnections, backendSocketsClosing, destroyAllBackends } from './backend-leg.js';
import { tunnels } from './tunnel.js';
import { httpRequestsInFlight } from './http-proxy.js';
import { initMetrics } from './metrics.js';
import { initAccessLog, flushAccessLog } from './access-log.js';
import { shutdownEntryPoints, type Shutdown } from './shutdown.js';
import { deliverBatch, initFanout, stopFanout } from './fanout-delivery.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const shared = attachShared(init.sharedBuffer, init.backendSlots, init.workerSlots);

function post(message: WorkerToPrimary): void {
  port.postMessage(message);
}

function onReleased(generation: Generation): void {
  context().live.delete(generation);
  post({ type: 'generation-released', id: generation.id });
}

function makeGeneration(g: GenerationInit): Generation {
  return new Generation(g, init.workerIndex, shared, onReleased);
}

const first = makeGeneration(init.generation);
const ctx = initContext(init.workerIndex, shared, first, post);
initMetrics(ctx);
// The access log is opened by the primary at start: a reload cannot turn it on.
initAccessLog(first.snapshot.accessLog.enabled, (records) => post({ type: 'access-log', records }));
adoptAddresses(first);

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

const listeners = new ListenerSet();
let stopping: Shutdown | null = null;
initFanout(() => listeners.apps());

listeners.apply(first, (failed) => {
  if (failed.length > 0) {
    post({ type: 'listen-failed', addresses: failed });
    // Listen callbacks can run inside apply(), before the worker is set up: stop on the next turn.
    setImmediate(() => stop([], true));
  } else post({ type: 'listening' });
});

/** A reload: new connections start in `g` from now on; what is open keeps its generation. */
function install(g: GenerationInit): void {
  const started = performance.now();
  const generation = makeGeneration(g);
  const previous = ctx.current;
  ctx.live.add(generation);
  ctx.current = generation;
  adoptAddresses(generation);
  const pauseMs = performance.now() - started;
  listeners.apply(generation, (failed) => post({ type: 'generation-installed', id: generation.id, pauseMs, failed }));
  previous.retire();
}

/** Stop as the primary asked: each entry point keeps accepting for its accept grace, then its clients are
 *  closed with 1001, paced over its grace window; `immediate` (a second signal, a crash) closes all now.
 *  The thread ends once every client and backend socket is gone. */
function stop(entryPoints: readonly EntryPointStop[], immediate: boolean): void {
  if (stopping === null) {
    ctx.shuttingDown = true;
    stopping = shutdownEntryPoints(entryPoints, listeners, post);
    const deadline = Date.now() + Math.max(0, ...entryPoints.map((e) => e.acceptGraceMs + e.graceMs));
    waitForEnd(deadline);
  }
  if (immediate) stopping.now();
}

/** After the window, how long clients told 1001 at its very end get to answer before they are cut. */
const CLOSE_REPLY_MS = 1000;

function waitForEnd(deadline: number): void {
  let endedAt = 0;
  let forced = false;
  const check = setInterval(() => {
    // Done when every client is gone and every backend socket closed (including those still
    // waiting for a backend's close reply, and those of upgrades in flight).
    if (stopping?.accepting) return;
    const busy = tunnels().size > 0 || backendConnections() > 0 || httpRequestsInFlight() > 0;
    const now = Date.now();
    if (busy && now < deadline) return;
    if (busy && endedAt === 0) {
      // The window is over: whoever the pacing has not reached yet (its last tick can fall just past the
      // window) is told 1001 now, and gets a moment to answer; cutting it at once would be a 1006.
      endedAt = now;
      stopping?.now();
      return;
    }
    if (busy && !forced && now < endedAt + CLOSE_REPLY_MS) return;
    if (busy && !forced) {
      forced = true;
      for (const t of tunnels()) t.ws?.close();
      destroyAllBackends();
      listeners.closeAll();
      return;
    }
    // A destroyed socket's fd is closed only when its 'close' event has run: a thread that ends
    // before that leaks the connection (the backend never sees it end). Give them a moment.
    if (backendSocketsClosing() > 0 && now < deadline + CLOSE_REPLY_MS + 1000) return;
    listeners.closeAll();
    for (const generation of ctx.live) generation.closeHttp();
    clearInterval(check);
    clearInterval(heartbeat);
    stopFanout();
    loopDelay.disable();
    flushAccessLog();
    port.close();
  }, 20);
}

port.on('message', (message: PrimaryToWorker) => {
  switch (message.type) {
    case 'shutdown':
      stop(message.entryPoints, message.immediate);
      return;
    case 'generation':
      if (stopping === null) install(message.generation);
      return;
    case 'fault':
      injectFault(message.kind, message.ms ?? 0);
      return;
    case 'backend-addresses':
      applyAddresses(message.addresses);
      return;
    case 'drain-backend':
      if (stopping === null) drainBackend(message.backend, message.windowMs, message.reason, message.untilUp);
      return;
    case 'fanout-publish':
      deliverBatch(message.batch);
      return;
  }
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
  stop([], true);
});
