/**
 * Live configuration: the config in force, and the reload that replaces it without touching a live
 * connection (Traefik's configurationwatcher shape: change → read → validate → compile → one new
 * generation → every worker swaps one reference; a connection keeps the generation it started in).
 *
 * A reload reads every file again, validates and compiles the whole configuration with backend slots
 * assigned by identity (backend-slots.ts), and either refuses it as a whole (the errors are logged exactly
 * as `sluice validate` prints them, counted as a failure, shown in /api/overview; the last good config
 * keeps running) or installs it: the metrics store names its series, health checks and discovery carry
 * every backend that stays, the workers take the generation, and backends it removed are drained (1012,
 * paced over their service's drainWindow) unless their service says `onRemove: keep`. A config equal to
 * the one in force changes nothing. Reloads run one at a time; requests that arrive meanwhile become one
 * more reload after it.
 *
 * A generation stays alive while any worker holds a connection opened under it; once released, its
 * counters are folded and the slots only it named are freed for other backends.
 */
import { isDeepStrictEqual } from 'node:util';
import { ConfigError, formatProblem, type ConfigProblem } from '../config/errors.js';
import { loadConfig, type LoadResult } from '../config/load.js';
import type { Snapshot } from '../config/snapshot.js';
import type { WatchSet } from '../config/sources.js';
import type { SharedViews } from '../shared/layout.js';
import type { GenerationInit } from '../shared/messages.js';
import type { ReloadStatus } from './admin-api.js';
import type { BackendManagement } from './backend-health.js';
import { BackendSlots, identityOf } from './backend-slots.js';
import { log } from './log.js';
import type { MetricsStore } from './metrics-store.js';
import type { InstallReport, Supervisor } from './supervisor.js';

export interface ReloadOutcome {
  readonly result: 'success' | 'failure' | 'unchanged';
  readonly generation: number;
  /** One line per problem, as `sluice validate` prints them (failure only). */
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
  /** Event-loop pause of each worker while installing (success only). */
  readonly pausesMs: readonly number[];
  /** Backend URLs the reload removed (as `service backend-url`). */
  readonly removed: readonly string[];
}

export function formatProblems(file: string, problems: readonly ConfigProblem[]): string[] {
  return problems.map((p) => formatProblem(file, p));
}

/** Keys a running Sluice cannot change: a reload that changes them keeps the running value and says so. */
function restartOnly(current: Snapshot, next: Snapshot): string[] {
  const changed: string[] = [];
  if (current.workers !== next.workers) changed.push('workers');
  if (current.admin.host !== next.admin.host || current.admin.port !== next.admin.port) changed.push('admin.address');
  if (!isDeepStrictEqual(current.accessLog, next.accessLog)) changed.push('accessLog');
  return changed;
}

/** Two snapshots that would run the same (their source label aside). */
function sameConfig(a: Snapshot, b: Snapshot): boolean {
  return isDeepStrictEqual({ ...a, source: '' }, { ...b, source: '' });
}

export class LiveConfig {
  private current: Snapshot;
  private generation = 1;
  /** Live generations naming each slot. */
  private readonly slotRefs: Int32Array;
  private readonly slotsOf = new Map<number, readonly number[]>();
  private attempts = 0;
  private success = 0;
  private failure = 0;
  private lastAttemptAt: number | null = null;
  private lastResult: ReloadStatus['lastResult'] = null;
  private lastError: readonly string[] = [];
  private watchSet: WatchSet;
  private running: Promise<ReloadOutcome> | null = null;
  private again: { trigger: string; waiters: ((outcome: ReloadOutcome) => void)[] } | null = null;
  /** Counts shown by /metrics (sluice_config_reloads_total). */
  readonly reloads = { success: 0, failure: 0 };
  /** Told after each installed generation (the watcher re-reads the watch set). */
  onInstalled: ((watch: WatchSet) => void) | null = null;

  constructor(
    private readonly configFile: string,
    private readonly workersOverride: number | undefined,
    first: LoadResult,
    private readonly slots: BackendSlots,
    private readonly shared: SharedViews,
    private readonly store: MetricsStore,
    private readonly supervisor: Supervisor,
    private readonly backends: BackendManagement,
  ) {
    this.current = first.snapshot;
    this.watchSet = first.watch;
    this.slotRefs = new Int32Array(slots.capacity);
    this.track(1, first.snapshot);
    supervisor.onGenerationReleased = (id) => this.released(id);
  }

  /**
   * Load the configuration Sluice starts with: backends numbered in config order become the first slot
   * identities, in a table sized for it (BackendSlots.capacityFor).
   */
  static loadFirst(configFile: string, workers: number | undefined): { loaded: LoadResult; slots: BackendSlots } {
    const loaded = loadConfig(configFile, workers === undefined ? {} : { workers });
    const slots = new BackendSlots(BackendSlots.capacityFor(loaded.snapshot.backends.length));
    const assignment = slots.begin();
    for (const spec of loaded.snapshot.backends) assignment.slots.set(identityOf(loaded.snapshot.services[spec.service]!.name, spec.url), spec.index);
    slots.commit(assignment);
    return { loaded, slots };
  }

  get snapshot(): Snapshot {
    return this.current;
  }

  get watch(): WatchSet {
    return this.watchSet;
  }

  /** The first generation, as workers start with it. */
  firstGeneration(metricsBuffer: SharedArrayBuffer): GenerationInit {
    return { id: 1, snapshot: this.current, metricsBuffer };
  }

  status(): ReloadStatus {
    return {
      generation: this.generation,
      attempts: this.attempts,
      success: this.success,
      failure: this.failure,
      lastAttemptAt: this.lastAttemptAt === null ? null : new Date(this.lastAttemptAt).toISOString(),
      lastResult: this.lastResult,
      lastError: this.lastError,
      liveGenerations: this.supervisor.liveGenerations,
    };
  }

  /** Reload now (or right after the reload in progress). `trigger` says why, for the log. */
  reload(trigger: string): Promise<ReloadOutcome> {
    if (this.running === null) {
      this.running = this.reloadOnce(trigger).finally(() => this.next());
      return this.running;
    }
    return new Promise((resolve) => {
      this.again ??= { trigger, waiters: [] };
      this.again.waiters.push(resolve);
    });
  }

  private next(): void {
    this.running = null;
    const again = this.again;
    this.again = null;
    if (again === null) return;
    void this.reload(again.trigger).then((outcome) => {
      for (const waiter of again.waiters) waiter(outcome);
    });
  }

  private async reloadOnce(trigger: string): Promise<ReloadOutcome> {
    this.attempts++;
    this.lastAttemptAt = Date.now();
    const assignment = this.slots.begin();
    let loaded: LoadResult;
    try {
      loaded = loadConfig(this.configFile, { ...(this.workersOverride === undefined ? {} : { workers: this.workersOverride }), assignSlot: assignment.assign });
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      return this.fail(trigger, error.format().split('\n'));
    }
    if (assignment.missing > 0) {
      return this.fail(trigger, [
        `${this.configFile}: the configuration needs ${assignment.missing} more backend slot(s) than are free (${this.slots.capacity} were made at start, ${this.slots.used} are in use): restart Sluice to apply it`,
      ]);
    }
    const warnings = formatProblems(this.configFile, loaded.warnings);
    for (const warning of warnings) log.warn(warning);
    let next = loaded.snapshot;
    const fixed = restartOnly(this.current, next);
    if (fixed.length > 0) {
      log.warn(`config reload: ${fixed.join(', ')} changed, which needs a restart (or sluice run --takeover); the running values stay`);
      next = { ...next, workers: this.current.workers, admin: this.current.admin, accessLog: this.current.accessLog };
    }
    this.watchSet = loaded.watch;
    if (sameConfig(this.current, next)) {
      this.lastResult = 'unchanged';
      log.debug(`config reload (${trigger}): nothing changed`);
      return { result: 'unchanged', generation: this.generation, errors: [], warnings, pausesMs: [], removed: [] };
    }
    this.slots.commit(assignment);
    const previous = this.current;
    const id = ++this.generation;
    this.current = next;
    this.track(id, next);
    const metrics = this.store.addGeneration(id, next);
    const gone = this.backends.apply(next);
    const report: InstallReport = await this.supervisor.install({ id, snapshot: next, metricsBuffer: metrics.buffer });
    const removed = this.drainRemoved(previous, next, gone);
    this.success++;
    this.reloads.success++;
    this.lastResult = 'success';
    this.lastError = [];
    const maxPause = report.pausesMs.length === 0 ? 0 : Math.max(...report.pausesMs);
    log.info(
      { generation: id, trigger, pausesMs: report.pausesMs.map((p) => Math.round(p * 100) / 100), removed, failedEntryPoints: report.failed },
      `config reloaded (${trigger}): generation ${id}; ${next.routers.length} routers, ${next.services.length} services, ${next.backends.length} backends; ` +
        `worker pause ${maxPause.toFixed(2)} ms${removed.length > 0 ? `; ${removed.length} backend(s) removed` : ''}`,
    );
    for (const failed of report.failed) log.error(`config reload: cannot listen on ${failed}: address in use or not available; the entry point keeps its previous listener if it had one`);
    this.onInstalled?.(this.watchSet);
    return { result: 'success', generation: id, errors: [], warnings, pausesMs: report.pausesMs, removed };
  }

  private fail(trigger: string, errors: string[]): ReloadOutcome {
    this.failure++;
    this.reloads.failure++;
    this.lastResult = 'failure';
    this.lastError = errors;
    log.error({ trigger, errors }, `config reload (${trigger}) refused; the running config stays:\n${errors.join('\n')}`);
    return { result: 'failure', generation: this.generation, errors, warnings: [], pausesMs: [], removed: [] };
  }

  /**
   * Backends the reload removed: drained (paced over their service's drainWindow, 1012) unless the new
   * config keeps them (their service's onRemove, or loadBalancer.onRemove when the service is gone too:
   * the config being applied says what the operator wants now).
   */
  private drainRemoved(previous: Snapshot, next: Snapshot, gone: readonly number[]): string[] {
    const removed: string[] = [];
    for (const slot of gone) {
      const spec = previous.backends.find((b) => b.index === slot);
      if (spec === undefined) continue;
      const service = previous.services[spec.service]!;
      removed.push(`${service.name} ${spec.url}`);
      const onRemove = next.services.find((s) => s.name === service.name)?.onRemove ?? next.onRemove;
      if (onRemove === 'drain') {
        this.supervisor.broadcast({ type: 'drain-backend', backend: slot, windowMs: service.drainWindowMs, reason: 'backend removed from the configuration', untilUp: false });
      }
    }
    return removed;
  }

  private track(id: number, snapshot: Snapshot): void {
    const slots = snapshot.backends.map((b) => b.index);
    this.slotsOf.set(id, slots);
    for (const slot of slots) this.slotRefs[slot]!++;
  }

  /** No worker holds generation `id` any more: fold its counters, free the slots only it named. */
  private released(id: number): void {
    const slots = this.slotsOf.get(id);
    if (slots === undefined) return;
    this.slotsOf.delete(id);
    this.store.releaseGeneration(id);
    for (const slot of slots) {
      if (--this.slotRefs[slot]! > 0) continue;
      // No live generation names it: its connections are all gone (each held its generation).
      if (Atomics.load(this.shared.backendActive, slot) !== 0) log.warn(`backend slot ${slot} freed with ${Atomics.load(this.shared.backendActive, slot)} connection(s) still counted`);
      this.slots.release(slot);
      this.store.releaseSlot(slot);
      this.backends.forget(slot);
    }
    log.debug(`config generation ${id} released`);
  }
}
