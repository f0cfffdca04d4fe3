/**
 * The traffic each scenario drives over a thread's connections once the conductor says start:
 * an open-loop ticker (echo, slow-consumer), a closed-loop refill (throughput) and an
 * open-upgrade-close loop (churn); connect and receive send nothing. Sends go through
 * LoadConnection.sendStamped, which stamps each message just before it is framed, so the client's
 * batching (ws-client.ts frames a tick's messages into one reused slab) never adds to the latency.
 */
import { performance } from 'node:perf_hooks';
import { recordMicros } from './histogram.js';
import { EVER_BLOCKED, SLOW, type ThreadRun } from './thread.js';
import { OPEN, type LoadConnection } from './client.js';

export interface Traffic {
  onOpen(client: LoadConnection): void;
  onMessage(client: LoadConnection): void;
  onClose(client: LoadConnection): void;
  stop(): void;
}

/** A message body: the send time goes into bytes 0-7 per send, the rest is a fixed pattern. */
function template(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 8; i < size; i++) b[i] = 0x61 + (i % 26);
  return b;
}

/**
 * Open loop: each connection sends every --interval ms whatever the replies do, so a slow proxy
 * shows up as latency and loss instead of silently lowering the offered load. Connections are
 * spread over up to 1,000 slots per interval (about one timer tick per millisecond), interleaved
 * between threads, so the load arrives evenly rather than in one burst per interval.
 */
export function startEchoTicker(run: ThreadRun): Traffic {
  const o = run.options;
  const slotCount = Math.max(1, Math.min(o.intervalMs, 1000));
  const tickMs = o.intervalMs / slotCount;
  const slots: LoadConnection[][] = Array.from({ length: slotCount }, () => []);
  run.held.forEach((c, i) => {
    (slots[(i * o.threads + run.task.thread) % slotCount] as LoadConnection[]).push(c);
    // A slow consumer stops reading: the kernel buffers fill, then the proxy must hold back or close it.
    if ((c.tag & SLOW) !== 0) c.pauseReading();
  });
  const fast = template(o.size);
  const slow = template(o.slowSize);

  const sendSlot = (list: LoadConnection[], scheduled: number): void => {
    let lagRecorded = false;
    for (const c of list) {
      if (c.state !== OPEN || c.blocked) continue;
      if (!lagRecorded && run.measuring) recordMicros(run.lag, (performance.now() - scheduled) * 1000);
      lagRecorded = true;
      const isSlow = (c.tag & SLOW) !== 0;
      const body = isSlow ? slow : fast;
      const accepted = c.sendStamped(body, 1);
      run.rawSent++;
      if (isSlow) {
        run.slow.sent++;
        run.slow.bytesSent += body.length;
        if (!accepted) blockUntilDrain(run, c);
      } else if (run.measuring) {
        run.sent++;
        run.bytesSent += body.length;
        c.sent++;
      }
    }
  };

  const started = performance.now();
  let nextTick = 0;
  let timer: NodeJS.Timeout | null = null;
  const tick = (): void => {
    if (!run.running) return;
    const due = Math.floor((performance.now() - started) / tickMs);
    // Catch up on every slot that fell due, so a late timer delays sends but never skips them.
    while (nextTick <= due) {
      sendSlot(slots[nextTick % slotCount] as LoadConnection[], started + nextTick * tickMs);
      nextTick++;
    }
    timer = setTimeout(tick, Math.max(0, started + nextTick * tickMs - performance.now()));
  };
  tick();
  return {
    onOpen() {},
    onMessage() {},
    onClose() {},
    stop() {
      if (timer) clearTimeout(timer);
    },
  };
}

/** Slow connections respect backpressure: once the kernel refuses, they wait for 'drain' to send again. */
function blockUntilDrain(run: ThreadRun, c: LoadConnection): void {
  c.blocked = true;
  if ((c.tag & EVER_BLOCKED) === 0) {
    c.tag |= EVER_BLOCKED;
    run.slow.everBlocked++;
  }
  c.whenWritable(() => {
    c.blocked = false;
  });
}

/**
 * Closed loop: every connection keeps --in-flight messages outstanding; each reply earns one new
 * send. Replies are collected and answered once per event-loop turn (setImmediate), so a read that
 * brought many replies costs one write per connection.
 */
export function startThroughput(run: ThreadRun): Traffic {
  const o = run.options;
  const body = template(o.size);
  let dirty: LoadConnection[] = [];
  let scheduled = false;

  const flush = (): void => {
    scheduled = false;
    const list = dirty;
    dirty = [];
    if (!run.running) return;
    for (const c of list) {
      const n = c.queued;
      c.queued = 0;
      if (c.state !== OPEN || n === 0) continue;
      c.sendStamped(body, n);
      run.rawSent += n;
      if (run.measuring) {
        run.sent += n;
        run.bytesSent += n * o.size;
        c.sent += n;
      }
    }
  };
  const owe = (c: LoadConnection, n: number): void => {
    if (c.queued === 0) dirty.push(c);
    c.queued += n;
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  for (const c of run.held) if (c.state === OPEN) owe(c, o.inFlight);
  return {
    onOpen() {},
    onMessage(c) {
      if (run.running) owe(c, 1);
    },
    onClose() {},
    stop() {},
  };
}

/**
 * Churn: --concurrency connections in flight per run, each opened, upgraded and closed with 1000;
 * its end starts the next. A failed attempt waits 10 ms before the next so a refusing target is
 * not hammered in a tight loop.
 */
export function startChurn(run: ThreadRun): Traffic {
  const next = (): void => {
    if (run.running) run.connect(run.nextChurnIndex());
  };
  for (let i = 0; i < run.task.count; i++) next();
  return {
    onOpen(c) {
      c.close(1000, 1000);
    },
    onMessage() {},
    onClose(c) {
      if (!run.running) return;
      if (c.wasOpen) next();
      else setTimeout(next, 10);
    },
    stop() {},
  };
}
