/**
 * Owns the worker threads: starts one per configured worker, restarts a crashed one with
 * exponential backoff while the others keep serving, hands every worker each new config generation,
 * and drains them all on shutdown. A dead worker's share of the shared live-connection counts is given
 * back before its slot is reused, so least-connections never counts ghosts.
 *
 * It also knows which worker still holds which generation (connections opened under it are open), so
 * the primary can release a generation, fold its counters and reuse its backend slots once no worker
 * holds it.
 */
import { Worker } from 'node:worker_threads';
import type { SharedViews } from '../shared/layout.js';
import { releaseWorkerSlot } from '../shared/layout.js';
import type { EntryPointStop, GenerationInit, PrimaryToWorker, WorkerInit, WorkerToPrimary } from '../shared/messages.js';
import { log } from './log.js';

const WORKER_URL = new URL('../worker/main.js', import.meta.url);
const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5000;
/** A worker that lived this long before crashing starts its backoff over. */
const STABLE_AFTER_MS = 30_000;
/** A worker that has not installed a generation after this long is reported as not having done so. */
const INSTALL_TIMEOUT_MS = 10_000;
/**
 * Young generation of each worker's V8 heap, in MB (V8's default on 64-bit is 48: two 16 MB semi-spaces
 * and a third for new large objects). A worker's hot path allocates almost nothing, but a burst of
 * upgrades does, and V8 then grows the young generation to its maximum and keeps it committed: 16 MB
 * more RSS per worker that no connection uses, 2 KB per connection in the bench's 8,000 held ones.
 * 8 MB (semi-spaces of 2.7 MB): RSS per idle proxied connection ~3.4 → ~1.3–1.9 KB, and saturation
 * throughput the same within the noise (3 runs each of semi-spaces 3, 5 and 16 MB: 672–720k round
 * trips/s for all three); scavenges come more often, each as cheap. An operator who sets
 * `--max-semi-space-size` (NODE_OPTIONS or node's own arguments) keeps V8's sizing instead.
 */
export const WORKER_YOUNG_GENERATION_MB = 8;

/** The V8 limits a worker starts with: none (V8's sizing) when the operator sized the young generation. */
export function workerResourceLimits(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): { maxYoungGenerationSizeMb?: number } {
  const sized = (arg: string): boolean => /^--max[-_]semi[-_]space[-_]size\b/.test(arg);
  if (execArgv.some(sized) || nodeOptions.split(/\s+/).some(sized)) return {};
  return { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB };
}

interface Slot {
  worker: Worker | null;
  listening: boolean;
  startedAt: number;
  backoffMs: number;
  restartTimer: NodeJS.Timeout | null;
}

/** What the admin listener reads about one worker (health, /api/overview). */
export interface WorkerStatus {
  readonly index: number;
  readonly running: boolean;
  readonly listening: boolean;
  readonly startedAt: number;
  /** The young generation limit Sluice gave the worker's V8 heap, in MB; null when the operator's
   *  `--max-semi-space-size` sizes it (worker.resourceLimits would then report V8's default, not the flag),
   *  or when the worker is not running. */
  readonly youngGenerationMb: number | null;
}

/** How the workers took a new generation. */
export interface InstallReport {
  /** Event-loop pause of each worker that installed it, in ms. */
  readonly pausesMs: readonly number[];
  /** Entry points a worker could not open (address in use, …), as `name (address)`. */
  readonly failed: readonly string[];
  /** Workers that did not answer in time. */
  readonly missing: number;
}

export class Supervisor {
  private readonly slots: Slot[] = [];
  private stopping = false;
  /** Called after a worker exited and its live counts were given back, before a replacement starts
   *  (the metrics store folds its counters into carried totals here). */
  onWorkerExit: ((index: number) => void) | null = null;
  /** A batch of access-log records from worker `index` (msgpackr-packed, see worker/access-log.ts). */
  onAccessLog: ((index: number, records: Uint8Array) => void) | null = null;
  /** Passive health: a worker saw an attempt on `backend` fail, and why (backend-health.ts counts it). */
  onBackendFailed: ((backend: number, reason: string) => void) | null = null;
  /** No worker holds generation `id` any more (it is not the current one). */
  onGenerationReleased: ((id: number) => void) | null = null;
  /** A backend drain ended in one worker (see WorkerToPrimary 'drain-ended'). */
  onDrainEnded: ((worker: number, backend: number, closed: number, kept: number) => void) | null = null;
  /** Shutdown progress of one entry point in one worker. */
  onDrainProgress: ((worker: number, entryPoint: string, closed: number, remaining: number) => void) | null = null;
  /** Fan-out: a worker's subscriber counts of the channels that changed (fanout-hub.ts). */
  onFanoutChannels: ((index: number, counts: readonly (string | number)[]) => void) | null = null;
  /** Messages every newly started worker gets first (the discovered address table). */
  welcomeMessages: (() => readonly PrimaryToWorker[]) | null = null;
  private firstStart: { resolve: () => void; reject: (error: Error) => void } | null = null;
  /** Generation id → workers that still hold it. */
  private readonly holders = new Map<number, Set<number>>();
  private current: GenerationInit;
  private readonly installs = new Map<number, { waiting: Set<number>; pauses: number[]; failed: string[]; done: (report: InstallReport) => void }>();

  /** The same for every worker: node's arguments and NODE_OPTIONS do not change while it runs. */
  private readonly resourceLimits = workerResourceLimits();

  constructor(
    first: GenerationInit,
    private readonly shared: SharedViews,
    private readonly workerCount_: number = first.snapshot.workers,
  ) {
    this.current = first;
  }

  /** Start every worker; resolves once all listen, rejects if an entry point cannot be opened. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.firstStart = { resolve, reject };
      for (let i = 0; i < this.workerCount_; i++) {
        this.slots.push({ worker: null, listening: false, startedAt: 0, backoffMs: FIRST_BACKOFF_MS, restartTimer: null });
        this.spawn(i);
      }
    });
  }

  get workerCount(): number {
    return this.slots.length;
  }

  /** Workers currently running and listening. */
  get listeningCount(): number {
    return this.slots.filter((s) => s.listening).length;
  }

  /** Every worker slot as it is now. */
  workers(): WorkerStatus[] {
    return this.slots.map((s, index) => ({
      index,
      running: s.worker !== null,
      listening: s.listening,
      startedAt: s.startedAt,
      youngGenerationMb: s.worker === null ? null : (this.resourceLimits.maxYoungGenerationSizeMb ?? null),
    }));
  }

  /** Generations some worker still holds (the current one included). */
  get liveGenerations(): number {
    return this.holders.size;
  }

  private hold(id: number, worker: number): void {
    let set = this.holders.get(id);
    if (set === undefined) this.holders.set(id, (set = new Set()));
    set.add(worker);
  }

  private unhold(id: number, worker: number): void {
    const set = this.holders.get(id);
    if (set === undefined || !set.delete(worker)) return;
    if (set.size === 0 && id !== this.current.id) {
      this.holders.delete(id);
      this.onGenerationReleased?.(id);
    }
  }

  private spawn(index: number): void {
    const slot = this.slots[index]!;
    const init: WorkerInit = {
      workerIndex: index,
      sharedBuffer: this.shared.buffer,
      backendSlots: this.shared.backendSlots,
      workerSlots: this.shared.workerSlots,
      generation: this.current,
    };
    const worker = new Worker(WORKER_URL, { workerData: init, name: `sluice-worker-${index}`, resourceLimits: this.resourceLimits });
    slot.worker = worker;
    slot.listening = false;
    slot.startedAt = Date.now();
    this.hold(this.current.id, index);
    worker.on('message', (message: WorkerToPrimary) => this.onMessage(index, message));
    for (const message of this.welcomeMessages?.() ?? []) worker.postMessage(message);
    worker.on('error', (error) => log.error(`worker ${index}: ${error.stack ?? error.message}`));
    worker.on('exit', (code) => this.onExit(index, code));
  }

  private onMessage(index: number, message: WorkerToPrimary): void {
    const slot = this.slots[index]!;
    switch (message.type) {
      case 'listening':
        slot.listening = true;
        if (this.firstStart !== null && this.slots.every((s) => s.listening)) {
          this.firstStart.resolve();
          this.firstStart = null;
        }
        return;
      case 'listen-failed':
        this.firstStart?.reject(new Error(`cannot listen on ${message.addresses.join(', ')}: address in use or not available`));
        this.firstStart = null;
        return;
      case 'generation-installed': {
        const install = this.installs.get(message.id);
        if (install === undefined || !install.waiting.delete(index)) return;
        install.pauses.push(message.pauseMs);
        install.failed.push(...message.failed.filter((f) => !install.failed.includes(f)));
        if (install.waiting.size === 0) this.finishInstall(message.id);
        return;
      }
      case 'generation-released':
        this.unhold(message.id, index);
        return;
      case 'backend-failed':
        this.onBackendFailed?.(message.backend, message.reason);
        return;
      case 'access-log':
        this.onAccessLog?.(index, message.records);
        return;
      case 'drain-ended':
        this.onDrainEnded?.(index, message.backend, message.closed, message.kept);
        return;
      case 'drain-progress':
        this.onDrainProgress?.(index, message.entryPoint, message.closed, message.remaining);
        return;
      case 'crashed':
        log.error(`worker ${index} crashed: ${message.stack || message.message}`);
        return;
      case 'fanout-channels':
        this.onFanoutChannels?.(index, message.counts);
        return;
    }
  }

  private onExit(index: number, code: number): void {
    const slot = this.slots[index]!;
    slot.worker = null;
    slot.listening = false;
    releaseWorkerSlot(this.shared, index);
    this.onWorkerExit?.(index);
    // Its connections died with it: it holds no generation any more.
    for (const id of [...this.holders.keys()]) this.unhold(id, index);
    for (const [id, install] of this.installs) if (install.waiting.delete(index) && install.waiting.size === 0) this.finishInstall(id);
    if (this.stopping || this.firstStart !== null) return;
    if (Date.now() - slot.startedAt > STABLE_AFTER_MS) slot.backoffMs = FIRST_BACKOFF_MS;
    const delay = slot.backoffMs;
    slot.backoffMs = Math.min(slot.backoffMs * 2, MAX_BACKOFF_MS);
    log.warn(`worker ${index} exited with code ${code}; restarting it in ${delay} ms`);
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = null;
      if (!this.stopping) this.spawn(index);
    }, delay);
  }

  /**
   * Hand every running worker a new generation; workers started later get it at start. Resolves when
   * each has installed it (or after INSTALL_TIMEOUT_MS), with their event-loop pauses.
   */
  install(generation: GenerationInit): Promise<InstallReport> {
    const previous = this.current;
    this.current = generation;
    const waiting = new Set<number>();
    this.slots.forEach((slot, index) => {
      if (slot.worker === null) return;
      waiting.add(index);
      this.hold(generation.id, index);
      slot.worker.postMessage({ type: 'generation', generation } satisfies PrimaryToWorker);
    });
    // The previous generation may have no holder left once it is not current (no worker running).
    const previousHolders = this.holders.get(previous.id);
    if (previousHolders !== undefined && previousHolders.size === 0) {
      this.holders.delete(previous.id);
      this.onGenerationReleased?.(previous.id);
    }
    return new Promise((resolve) => {
      if (waiting.size === 0) {
        resolve({ pausesMs: [], failed: [], missing: 0 });
        return;
      }
      const timer = setTimeout(() => this.finishInstall(generation.id), INSTALL_TIMEOUT_MS);
      timer.unref();
      this.installs.set(generation.id, {
        waiting,
        pauses: [],
        failed: [],
        done: (report) => {
          clearTimeout(timer);
          resolve(report);
        },
      });
    });
  }

  private finishInstall(id: number): void {
    const install = this.installs.get(id);
    if (install === undefined) return;
    this.installs.delete(id);
    install.done({ pausesMs: install.pauses, failed: install.failed, missing: install.waiting.size });
  }

  /** Send `message` to every running worker. */
  broadcast(message: PrimaryToWorker): void {
    for (const slot of this.slots) slot.worker?.postMessage(message);
  }

  /** Tests only: make worker `index` throw or block (see PrimaryToWorker 'fault'). */
  injectFault(index: number, kind: 'throw' | 'block', ms = 0): void {
    const message: PrimaryToWorker = { type: 'fault', kind, ms };
    this.slots[index]?.worker?.postMessage(message);
  }

  /**
   * Stop every worker as `entryPoints` say (accept grace, then paced closes); resolves when all have
   * exited. `immediate`: close everything now (a second signal; tests).
   */
  async shutdown(entryPoints: readonly EntryPointStop[], immediate = false): Promise<void> {
    this.stopping = true;
    const exits: Promise<void>[] = [];
    for (const slot of this.slots) {
      if (slot.restartTimer !== null) clearTimeout(slot.restartTimer);
      const worker = slot.worker;
      if (worker === null) continue;
      exits.push(new Promise((resolve) => worker.once('exit', () => resolve())));
      worker.postMessage({ type: 'shutdown', entryPoints, immediate } satisfies PrimaryToWorker);
    }
    await Promise.all(exits);
  }
}
