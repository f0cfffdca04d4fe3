/**
 * `sluice run`: load and compile the config, allocate the shared counters, start the workers, and
 * shut down cleanly on SIGTERM/SIGINT (stop accepting, close clients with 1001 within the grace
 * period, exit 0). A second signal during the drain ends the drain at once.
 */
import { loadConfigFileWithWarnings } from '../config/load.js';
import { ConfigError, formatProblem, formatWarning } from '../config/errors.js';
import type { ConfigWarning } from '../config/errors.js';
import type { Snapshot } from '../config/snapshot.js';
import { createShared } from '../shared/layout.js';
import { planMetrics } from '../shared/metrics-plan.js';
import { Supervisor } from './supervisor.js';
import { manageBackends } from './backend-health.js';
import { log, setLogLevel } from './log.js';
import { formatHostPort, startObservability } from './observability.js';

export interface RunOptions {
  readonly configFile: string;
  readonly workers?: number;
}

function describeEntryPoints(snapshot: Snapshot): string {
  return snapshot.entryPoints
    .map((ep) => `${ep.name} on ${ep.tls ? 'wss' : 'ws'}://${ep.host === '' ? '*' : ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}`)
    .join(', ');
}

/** Runs until a signal stops it; resolves with the process exit code. */
export async function run(options: RunOptions): Promise<number> {
  let snapshot: Snapshot;
  let warnings: readonly ConfigWarning[];
  try {
    ({ snapshot, warnings } = loadConfigFileWithWarnings(options.configFile, options.workers === undefined ? {} : { workers: options.workers }));
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${[error.format(), ...error.warnings.map(formatWarning)].join('\n')}\n`);
      return 2;
    }
    throw error;
  }
  setLogLevel(snapshot.logLevel);
  for (const warning of warnings) log.warn({ file: warning.file, path: warning.path }, formatProblem(warning.file, warning));
  const shared = createShared(snapshot.backends.length, snapshot.workers, planMetrics(snapshot).slabFloats);
  const supervisor = new Supervisor(snapshot, shared);
  // Signals are taken from here on, before any worker or listener exists: a SIGTERM that arrives
  // while starting must drain what started rather than kill the process with its threads mid-way.
  let onStopped: (code: number) => void = () => undefined;
  const stopped = new Promise<number>((resolve) => (onStopped = resolve));
  let stopRequested: NodeJS.Signals | null = null;
  let stop = (signal: NodeJS.Signals): void => {
    stopRequested ??= signal;
  };
  const onSignal = (signal: NodeJS.Signals): void => stop(signal);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Health bits, active checks and DNS discovery (backend-health.ts); workers only read the bits.
  const backends = manageBackends(snapshot, shared, supervisor);
  // The admin listener opens first, so /ready answers 503 (not a refused connection) while workers start.
  const observability = await startObservability(snapshot, shared, supervisor, (backend) => backends.health.status(backend));
  const { admin, adminAddress } = observability;
  try {
    await backends.start();
    await supervisor.start();
  } catch (error) {
    log.error((error as Error).message);
    backends.stop();
    await supervisor.shutdown(0);
    observability.close();
    return 1;
  }
  observability.markStarted();
  log.info(
    {
      entryPoints: snapshot.entryPoints.map((ep) => ({ name: ep.name, address: formatHostPort(ep.host, ep.port), tls: ep.tls })),
      workers: snapshot.workers,
      admin: admin === null ? null : adminAddress,
      config: snapshot.source,
    },
    `sluice listening: ${describeEntryPoints(snapshot)}; ${snapshot.workers} worker${snapshot.workers === 1 ? '' : 's'}; ` +
      `${snapshot.routers.length} routers, ${snapshot.services.length} services, ${snapshot.backends.length} backends; ` +
      `admin ${admin === null ? 'unavailable' : `http://${adminAddress}`}; config ${snapshot.source}`,
  );
  let stopping = false;
  stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn(`${signal} again: closing every connection now`);
      void supervisor.shutdown(0);
      return;
    }
    stopping = true;
    observability.markDraining();
    log.info(`${signal}: draining (grace ${snapshot.shutdownGraceMs} ms)`);
    backends.stop();
    void supervisor.shutdown(snapshot.shutdownGraceMs).then(() => {
      observability.close();
      log.info('stopped');
      onStopped(0);
    });
  };
  if (stopRequested !== null) stop(stopRequested);
  return stopped;
}
