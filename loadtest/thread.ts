/**
 * One load thread (a piscina task that lives for the whole run): it opens its share of the
 * connections, drives the scenario's traffic when the conductor says start, counts only what falls
 * inside the measured window, and returns its counters and encoded histograms packed with msgpackr.
 *
 * Send times ride in the first 8 payload bytes as this thread's performance.now(); the reply comes
 * back to the same thread, so the clock that stamps is the clock that reads and no cross-thread
 * epoch is needed. In `receive` the server stamps what it pushes with the Unix time (client.ts), which
 * only means something when the two clocks agree: same host, or hosts kept in step by NTP.
 *
 * Connections are made through a ClientFactory and driven through LoadConnection (client.ts), so a second
 * client implementation plugs in at createClient below.
 */
import { performance } from 'node:perf_hooks';
import type * as hdr from 'hdr-histogram-js';
import { encodeHistogram, newHistogram, recordMicros } from './histogram.js';
import type { ControlMessage, SlowResult, ThreadResult, ThreadTask } from './protocol.js';
import { OPEN, parseTarget, type ClientEvents, type ClientFactory, type LoadConnection, type Target } from './client.js';
import { createLeanWebSocket } from './ws-client.js';
import { startChurn, startEchoTicker, startThroughput, type Traffic } from './traffic.js';
import { runNativeThread } from './native-client.js';
import { ThreadRunBase, runThreadTask, sleep } from './thread-run.js';

/** The client implementation every connection is made with. */
const createClient: ClientFactory = createLeanWebSocket;

/** Connection flags in LoadConnection.tag: this one stops reading (slow-consumer); its writes were refused once. */
export const SLOW = 1;
export const EVER_BLOCKED = 2;

export class ThreadRun extends ThreadRunBase implements ClientEvents {
  readonly targets: Target[];
  readonly open = new Set<LoadConnection>();
  /** Connections in the order they were opened; traffic is scheduled over this list. */
  readonly held: LoadConnection[] = [];


  sent = 0;
  received = 0;
  corrupt = 0;
  /** receive: messages without a push stamp (counted, no latency). */
  unstamped = 0;
  bytesSent = 0;
  bytesReceived = 0;
  rawSent = 0;
  rawReceived = 0;
  readonly slow: SlowResult = {
    connections: 0,
    sent: 0,
    bytesSent: 0,
    everBlocked: 0,
    blockedAtStop: 0,
    closed: {},
    receivedAfterResume: 0,
    bytesReceivedAfterResume: 0,
  };

  readonly rtt: hdr.Histogram = newHistogram();
  readonly lag: hdr.Histogram = newHistogram();

  private traffic: Traffic | null = null;
  private churnConnectionCounter = 0;

  constructor(task: ThreadTask) {
    super(task);
    const { hostHeader, servername } = this.options;
    this.targets = this.options.urls.map((url) => parseTarget(url, { hostHeader, servername }));
  }

  /** Opens connection number `index` (global numbering picks its URL and source address). */
  connect(index: number): LoadConnection {
    const addrs = this.options.localAddresses;
    this.attempted++;
    return createClient(this.targets[index % this.targets.length] as Target, this, {
      localAddress: addrs.length > 0 ? addrs[index % addrs.length] : undefined,
      timeoutMs: this.options.connectTimeoutMs,
      insecure: this.options.insecure,
      stamps: this.options.scenario === 'receive' ? 'push' : 'echo',
    });
  }

  /** A fresh global-ish index for churn, interleaved between threads so addresses rotate evenly. */
  nextChurnIndex(): number {
    return this.churnConnectionCounter++ * this.options.threads + this.task.thread;
  }

  onOpen(client: LoadConnection): void {
    this.opened++;
    this.settled++;
    this.open.add(client);
    if (this.open.size > this.peakOpen) this.peakOpen = this.open.size;
    const micros = (client.openedAt - client.startedAt) * 1000;
    if (this.options.scenario === 'churn') {
      if (!this.measuring || this.stopping) return this.traffic?.onOpen(client);
      this.upgrades++;
      recordMicros(this.upgradeLatency, micros);
      recordMicros(this.recent, micros);
      this.traffic?.onOpen(client);
      return;
    }
    this.upgrades++;
    recordMicros(this.upgradeLatency, micros);
    if (this.options.scenario === 'connect') recordMicros(this.recent, micros);
    if (this.options.scenario === 'slow-consumer' && this.slow.connections < this.slowShare()) {
      client.tag |= SLOW;
      this.slow.connections++;
    }
    this.held.push(client);
    this.maybeReady();
  }

  onMessage(client: LoadConnection, sentAt: number, length: number, now: number): void {
    this.rawReceived++;
    if ((client.tag & SLOW) !== 0) {
      this.slow.receivedAfterResume++;
      this.slow.bytesReceivedAfterResume += length;
      return;
    }
    const micros = (now - sentAt) * 1000;
    if (micros >= 0) recordMicros(this.recent, micros); // progress shows warm-up latency too
    if (this.options.scenario === 'receive') {
      // Nothing was sent: count what arrives inside the window; latency only for stamped pushes.
      if (!this.measuring || this.stopping) return;
      this.received++;
      client.received++;
      this.bytesReceived += length;
      if (sentAt === sentAt) recordMicros(this.rtt, micros);
      else this.unstamped++;
      return;
    }
    if (sentAt >= this.measureStart) {
      this.received++;
      client.received++;
      this.bytesReceived += length;
      if (length !== this.options.size) this.corrupt++;
      recordMicros(this.rtt, micros);
    }
    this.traffic?.onMessage(client);
  }

  onClose(client: LoadConnection): void {
    const wasOpen = this.open.delete(client);
    if (!client.wasOpen) {
      this.settled++;
      // Churn counts failures only inside the measured window; held scenarios count every attempt
      // until the run stops (attempts cut short by Ctrl-C are not the target's failures).
      if ((this.options.scenario !== 'churn' || this.measuring) && !this.stopping) {
        const reason = client.failure ?? 'closed';
        this.failures[reason] = (this.failures[reason] ?? 0) + 1;
        this.failureCount++;
      }
      this.maybeReady();
    } else if (wasOpen && client.failure !== null && !this.stopping) {
      const reason = client.peerCloseCode > 0 ? `close ${client.peerCloseCode}` : client.failure;
      const into = (client.tag & SLOW) !== 0 ? this.slow.closed : this.closedEarly;
      into[reason] = (into[reason] ?? 0) + 1;
      this.failureCount++;
    }
    this.traffic?.onClose(client);
  }

  /** This thread's part of --slow, spread like the connections so every thread has both kinds. */
  private slowShare(): number {
    const { slow, threads } = this.options;
    return Math.floor(slow / threads) + (this.task.thread < slow % threads ? 1 : 0);
  }

  private maybeReady(): void {
    if (!this.readySent && this.options.scenario !== 'churn' && this.settled >= this.task.count) this.ready();
  }

  /** Churn opens its own connections once started: nothing to ramp up. */
  override rampUp(): void {
    if (this.options.scenario === 'churn') return this.ready();
    super.rampUp();
  }

  progress(): void {
    this.post({
      type: 'progress',
      open: this.open.size,
      rawSent: this.rawSent,
      rawReceived: this.rawReceived,
      upgrades: this.upgrades,
      failures: this.failureCount,
      recent: encodeHistogram(this.recent),
    });
    this.recent.reset();
  }

  control(message: ControlMessage): void {
    if (message.type === 'start' && !this.running && !this.stopping) {
      this.running = true;
      const o = this.options;
      if (o.scenario === 'echo' || o.scenario === 'slow-consumer') this.traffic = startEchoTicker(this);
      else if (o.scenario === 'throughput') this.traffic = startThroughput(this);
      else if (o.scenario === 'churn') this.traffic = startChurn(this);
    } else if (message.type === 'measure' && !this.measuring && !this.stopping) {
      this.measuring = true;
      this.measureStart = performance.now();
      this.sent = this.received = this.corrupt = this.unstamped = this.bytesSent = this.bytesReceived = 0;
      this.rtt.reset();
      this.lag.reset();
      if (this.options.scenario === 'churn') {
        this.upgrades = 0;
        this.upgradeLatency.reset();
      }
    } else if (message.type === 'stop') {
      this.markStopped();
      this.traffic?.stop();
    }
  }

  /** After stop: wait (bounded by --drain) for replies still on their way, then close everything. */
  async finish(): Promise<ThreadResult> {
    const deadline = performance.now() + this.options.drain * 1000;
    for (const c of this.held) {
      if ((c.tag & SLOW) !== 0 && c.state === OPEN) {
        if (c.blocked) this.slow.blockedAtStop++;
        c.resumeReading();
      }
    }
    const resumedAt = performance.now();
    const waitingForSlow = (): boolean => this.slow.connections > 0 && performance.now() - resumedAt < 300;
    while (performance.now() < deadline && (this.outstanding() > 0 || waitingForSlow())) await sleep(10);
    for (const c of this.open) c.close(1000, 1000);
    const closeDeadline = performance.now() + 1500;
    while (this.open.size > 0 && performance.now() < closeDeadline) await sleep(10);
    for (const c of this.open) c.destroy();
    return {
      attempted: this.attempted,
      opened: this.opened,
      peakOpen: this.peakOpen,
      failures: this.failures,
      closedEarly: this.closedEarly,
      sent: this.sent,
      received: this.received,
      corrupt: this.corrupt,
      unstamped: this.unstamped,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      upgrades: this.upgrades,
      measuredMs: this.measuredMs(),
      rtt: encodeHistogram(this.rtt),
      upgrade: encodeHistogram(this.upgradeLatency),
      lag: encodeHistogram(this.lag),
      slow: this.options.scenario === 'slow-consumer' ? this.slow : null,
    };
  }

  /** Measured messages still unanswered on connections that can still answer them. */
  private outstanding(): number {
    if (this.sent - this.received <= 0) return 0;
    for (const c of this.held) if ((c.tag & SLOW) === 0 && c.state === OPEN && c.sent > c.received) return 1;
    return 0;
  }
}

/** The piscina task: runs until the conductor says stop, then resolves with msgpackr-packed ThreadResult. */
export default async function runThread(task: ThreadTask): Promise<Uint8Array> {
  if (task.options.client === 'native') return runNativeThread(task);
  return runThreadTask(new ThreadRun(task));
}
