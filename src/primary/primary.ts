/**
 * The primary thread put together: the first config loaded, the shared counters sized for it, the
 * metrics store, backend health, the supervisor and its workers, live configuration (reload on a file
 * change, SIGHUP or POST /api/reload) and the admin listener. `sluice run` (run.ts) adds the process
 * concerns (signals, exit codes, takeover); in-process tests start the very same thing.
 */
import type { Snapshot } from '../config/snapshot.js';
import { formatProblem } from '../config/errors.js';
import { describeEntryPointRouting } from '../config/compile-tls.js';
import { createShared, type SharedViews } from '../shared/layout.js';
import type { EntryPointStop } from '../shared/messages.js';
import type http from 'node:http';
import { FanoutHub } from './fanout-hub.js';
import { fanoutDocument, fanoutOverview, registerFanoutMetrics } from './fanout-metrics.js';
import { startPublishListener } from './fanout-publish.js';
import { manageBackends, type BackendManagement } from './backend-health.js';
import { ConfigWatcher } from './config-watcher.js';
import { LiveConfig, type ReloadOutcome } from './live-config.js';
import { log } from './log.js';
import { MetricsStore } from './metrics-store.js';
import { startObservability, type Observability } from './observability.js';
import { Supervisor } from './supervisor.js';

export interface PrimaryOptions {
  readonly workers?: number | undefined;
  /** Open the admin listener later (takeover: the old process still holds its port). */
  readonly deferAdmin?: boolean;
  /** Watch the config files (default true; `providers.file.watch: false` turns the dynamic ones off). */
  readonly watch?: boolean;
}

export interface Primary {
  snapshot(): Snapshot;
  readonly shared: SharedViews;
  readonly store: MetricsStore;
  readonly supervisor: Supervisor;
  readonly live: LiveConfig;
  readonly backends: BackendManagement;
  readonly observability: Observability;
  /** Fan-out (GRIP publish/subscribe); null when the config has no `fanout` section at start. */
  readonly fanout: FanoutHub | null;
  /** Resolve discovery, start checks and workers; rejects when an entry point cannot be opened. */
  start(): Promise<void>;
  reload(trigger: string): Promise<ReloadOutcome>;
  /** Stop as each entry point's lifeCycle says (or `immediate`), then close the admin listener. */
  stop(immediate?: boolean, acceptGrace?: boolean): Promise<void>;
}

/** How each entry point of `snapshot` stops. `acceptGrace` false: stop accepting at once (takeover). */
export function entryPointStops(snapshot: Snapshot, acceptGrace = true): EntryPointStop[] {
  return snapshot.entryPoints.map((ep) => ({ entryPoint: ep.name, acceptGraceMs: acceptGrace ? ep.lifeCycle.acceptGraceMs : 0, graceMs: ep.lifeCycle.graceMs }));
}

/** Load `configFile` and build the primary around it; throws ConfigError when the config is invalid. */
export async function createPrimary(configFile: string, options: PrimaryOptions = {}): Promise<Primary> {
  const { loaded, slots } = LiveConfig.loadFirst(configFile, options.workers);
  for (const warning of loaded.warnings) log.warn({ file: warning.file, path: warning.path }, formatProblem(warning.file, warning));
  for (const line of describeEntryPointRouting(loaded.snapshot)) log.info(line);
  const first = loaded.snapshot;
  const shared = createShared(slots.capacity, first.workers);
  const store = new MetricsStore(shared);
  const metrics = store.addGeneration(1, first);
  let live: LiveConfig | null = null;
  const supervisor = new Supervisor({ id: 1, snapshot: first, metricsBuffer: metrics.buffer }, shared);
  // Fan-out's publish listener and Redis link are fixed by the config Sluice started with, like the admin listener.
  const fanout = first.fanout === null ? null : new FanoutHub(first.fanout, shared, supervisor);
  supervisor.onWorkerExit = (index) => {
    fanout?.foldWorker(index);
    store.foldWorker(index);
  };
  if (fanout !== null) supervisor.onFanoutChannels = (index, counts) => fanout.channelCounts(index, counts);
  let publishListener: http.Server | null = null;
  const backends = manageBackends(first, shared, supervisor);
  live = new LiveConfig(configFile, options.workers, loaded, slots, shared, store, supervisor, backends);
  const liveConfig = live;
  const observability = await startObservability({
    snapshot: () => liveConfig.snapshot,
    first,
    store,
    supervisor,
    backendHealth: (backend) => backends.health.status(backend),
    reloadStatus: () => liveConfig.status(),
    reload: (trigger) => liveConfig.reload(trigger),
    reloads: liveConfig.reloads,
    deferAdmin: options.deferAdmin ?? false,
    ...(fanout === null ? {} : { fanout: { overview: () => fanoutOverview(fanout), document: () => fanoutDocument(fanout) } }),
  });
  if (fanout !== null) registerFanoutMetrics(observability.metrics.registry, fanout);
  supervisor.onDrainProgress = (worker, entryPoint, closed, remaining) => {
    if (remaining === 0) log.info(`entry point '${entryPoint}' (worker ${worker}): closed its ${closed} connection(s)`);
    else log.info(`entry point '${entryPoint}' (worker ${worker}): draining, ${closed} closed, ${remaining} left`);
  };
  const watcher = options.watch === false
    ? null
    : new ConfigWatcher(
        (what) => void liveConfig.reload(`file changed: ${what}`),
        (file) => log.warn(`static configuration ${file} changed: entry points and providers are read at start; restart Sluice (or sluice run --takeover) to apply it`),
      );
  liveConfig.onInstalled = (watch) => watcher?.update(watch);
  let stopping: Promise<void> | null = null;
  return {
    snapshot: () => liveConfig.snapshot,
    shared,
    store,
    supervisor,
    live: liveConfig,
    backends,
    observability,
    fanout,
    async start() {
      await backends.start();
      await supervisor.start();
      if (fanout !== null) {
        await fanout.start();
        publishListener = await startPublishListener(fanout.settings, fanout);
      }
      watcher?.update(liveConfig.watch);
      observability.markStarted();
    },
    reload: (trigger) => liveConfig.reload(trigger),
    stop(immediate = false, acceptGrace = true) {
      if (stopping !== null) {
        if (immediate) void supervisor.shutdown([], true);
        return stopping;
      }
      watcher?.close();
      observability.markDraining();
      backends.stop();
      publishListener?.close();
      publishListener?.closeAllConnections();
      stopping = supervisor.shutdown(entryPointStops(liveConfig.snapshot, acceptGrace), immediate).then(() => {
        fanout?.close();
        observability.close();
      });
      return stopping;
    },
  };
}
