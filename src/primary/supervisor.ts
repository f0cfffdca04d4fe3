/**
 * Owns the worker threads: starts one per configured worker, restarts a crashed one with
 * exponential backoff while the others keep serving, and drains them all on shutdown.
 * A dead worker's share of the shared live-connection counts is given back before its slot is
 * reused, so least-connections never counts ghosts.
 */
import { Worker } from 'node:worker_threads';
import type { Snapshot } from '../config/snapshot.js';
import type { SharedViews } from '../shared/layout.js';
import { releaseWorkerSlot } from '../shared/layout.js';
import type { PrimaryToWorker, WorkerInit, WorkerToPrimary } from '../shared/messages.js';
import { log } from './log.js';

const WORKER_URL = new URL('../worker/main.js', import.meta.url);
const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5000;
/** A worker that lived this long before crashing starts its backoff over. */
const STABLE_AFTER_MS = 30_000;

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
}

export class Supervisor {
  private readonly slots: Slot[] = [];
  private stopping = false;
  /** Called after a worker exited and its live counts were given back, before a replacement starts
   *  (the metrics store folds its counters into carried totals here). */
  onWorkerExit: ((index: number) => void) | null = null;
  /** A batch of access-log records from worker `index` (msgpackr-packed, see worker/access-log.ts). */
  onAccessLog: ((index: number, records: Uint8Array) => void) | null = null;
  /** Passive health: a worker saw an attempt on `backend` fail (backend-health.ts counts it). */
  onBackendFailed: ((backend: number) => void) | null = null;
  /** Messages every newly started worker gets first (the discovered address table). */
  welcomeMessages: (() => readonly PrimaryToWorker[]) | null = null;
  private firstStart: { resolve: () => void; reject: (error: Error) => void } | null = null;

  constructor(
    private readonly snapshot: Snapshot,
    private readonly shared: SharedViews,
  ) {}

  /** Start every worker; resolves once all listen, rejects if an entry point cannot be opened. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.firstStart = { resolve, reject };
      for (let i = 0; i < this.snapshot.workers; i++) {
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
    return this.slots.map((s, index) => ({ index, running: s.worker !== null, listening: s.listening, startedAt: s.startedAt }));
  }

  private spawn(index: number): void {
    const slot = this.slots[index]!;
    const init: WorkerInit = {
      workerIndex: index,
      snapshot: this.snapshot,
      sharedBuffer: this.shared.buffer,
      backendSlots: this.shared.backendSlots,
      workerSlots: this.shared.workerSlots,
      slabFloats: this.shared.slabFloats,
    };
    const worker = new Worker(WORKER_URL, { workerData: init, name: `sluice-worker-${index}` });
    slot.worker = worker;
    slot.listening = false;
    slot.startedAt = Date.now();
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
      case 'backend-failed':
        this.onBackendFailed?.(message.backend);
        return;
      case 'access-log':
        this.onAccessLog?.(index, message.records);
        return;
      case 'crashed':
        log.error(`worker ${index} crashed: ${message.stack || message.message}`);
        return;
    }
  }

  private onExit(index: number, code: number): void {
    const slot = this.slots[index]!;
    slot.worker = null;
    slot.listening = false;
    releaseWorkerSlot(this.shared, index);
    this.onWorkerExit?.(index);
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

  /** Send `message` to every running worker. */
  broadcast(message: PrimaryToWorker): void {
    for (const slot of this.slots) slot.worker?.postMessage(message);
  }

  /** Tests only: make worker `index` throw or block (see PrimaryToWorker 'fault'). */
  injectFault(index: number, kind: 'throw' | 'block', ms = 0): void {
    const message: PrimaryToWorker = { type: 'fault', kind, ms };
    this.slots[index]?.worker?.postMessage(message);
  }

  /** Ask every worker to drain within graceMs; resolves when all have exited. */
  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    const exits: Promise<void>[] = [];
    for (const slot of this.slots) {
      if (slot.restartTimer !== null) clearTimeout(slot.restartTimer);
      const worker = slot.worker;
      if (worker === null) continue;
      exits.push(new Promise((resolve) => worker.once('exit', () => resolve())));
      const message: PrimaryToWorker = { type: 'shutdown', graceMs };
      worker.postMessage(message);
    }
    await Promise.all(exits);
  }
}
