/**
 * `sluice run`: start the primary (primary.ts) and look after the process: refuse a port another
 * Sluice holds unless asked to take it over (takeover.ts), reload on SIGHUP, and stop on SIGTERM/SIGINT
 * as each entry point's lifeCycle says (/ready turns 503 at once, new connections are accepted for
 * requestAcceptGraceTimeout, then clients are closed with 1001 paced over graceTimeOut, exit 0). A
 * second signal closes what is left at once. SIGUSR2 is the soft stop a successor's --takeover sends:
 * stop accepting now, give the admin port up, drain paced, exit 0.
 */
import { ConfigError, formatWarning } from '../config/errors.js';
import type { Snapshot } from '../config/snapshot.js';
import { formatHostPort } from '../shared/address.js';
import { log, setLogLevel } from './log.js';
import { createPrimary, type Primary } from './primary.js';
import { TAKEOVER_SIGNAL, busyEntryPoints, isSluice, listenersOf, portInUseMessage } from './takeover.js';

export interface RunOptions {
  readonly configFile: string;
  readonly workers?: number;
  /** Replace the Sluice that holds the entry points' ports, without dropping its connections. */
  readonly takeover?: boolean;
}

function describeEntryPoints(snapshot: Snapshot): string {
  return snapshot.entryPoints.map((ep) => `${ep.name} on ${ep.tls ? 'wss' : 'ws'}://${formatHostPort(ep.host, ep.port)}`).join(', ');
}

/** Runs until a signal stops it; resolves with the process exit code. */
export async function run(options: RunOptions): Promise<number> {
  // Signals are taken from here on, before any worker or listener exists: a SIGTERM that arrives
  // while starting must drain what started rather than kill the process with its threads mid-way.
  let stopRequested: NodeJS.Signals | null = null;
  let onSignal = (signal: NodeJS.Signals): void => {
    if (signal !== 'SIGHUP') stopRequested ??= signal;
  };
  const handler = (signal: NodeJS.Signals): void => onSignal(signal);
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP', TAKEOVER_SIGNAL] as const) process.on(signal, handler);

  let primary: Primary;
  try {
    primary = await createPrimary(options.configFile, { workers: options.workers, deferAdmin: options.takeover === true });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${[error.format(), ...error.warnings.map(formatWarning)].join('\n')}\n`);
      return 2;
    }
    throw error;
  }
  const snapshot = primary.snapshot();
  setLogLevel(snapshot.logLevel);

  // Another socket on an entry point's address: refuse, or (--takeover) find the Sluice holding it.
  const busy = await busyEntryPoints(snapshot.entryPoints);
  let predecessors: number[] = [];
  if (busy.length > 0) {
    if (options.takeover !== true) {
      log.error(portInUseMessage(busy));
      await primary.stop(true);
      return 1;
    }
    predecessors = [...new Set(busy.flatMap((ep) => listenersOf(ep.port)))];
    const strangers = predecessors.filter((pid) => !isSluice(pid));
    if (predecessors.length === 0 || strangers.length > 0) {
      log.error(`--takeover: ${predecessors.length === 0 ? 'cannot find the process listening on' : `process ${strangers.join(', ')} listening on`} ${busy.map((ep) => formatHostPort(ep.host, ep.port)).join(', ')} ${predecessors.length === 0 ? '' : 'is not Sluice '}(expected a running Sluice to replace)`);
      await primary.stop(true);
      return 1;
    }
  } else if (options.takeover === true) {
    log.warn('--takeover: no Sluice holds these ports; starting as usual');
  }

  try {
    await primary.start();
  } catch (error) {
    log.error((error as Error).message);
    await primary.stop(true);
    return 1;
  }
  if (predecessors.length > 0) {
    log.info(`takeover: listening beside process ${predecessors.join(', ')}; asking it to stop accepting and drain`);
    for (const pid of predecessors) {
      try {
        process.kill(pid, TAKEOVER_SIGNAL);
      } catch (error) {
        log.warn(`takeover: cannot signal process ${pid}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
    }
  }
  if (options.takeover === true) await primary.observability.openAdmin(30_000);
  const { admin, adminAddress } = primary.observability;
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

  let onStopped: (code: number) => void = () => undefined;
  const stopped = new Promise<number>((resolve) => (onStopped = resolve));
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn(`${signal} again: closing every connection now`);
      void primary.stop(true);
      return;
    }
    stopping = true;
    const current = primary.snapshot();
    const takenOver = signal === TAKEOVER_SIGNAL;
    if (takenOver) primary.observability.closeAdmin();
    const plan = current.entryPoints.map((ep) => `${ep.name}: accept ${takenOver ? 0 : ep.lifeCycle.acceptGraceMs} ms, then close over ${ep.lifeCycle.graceMs} ms`).join('; ');
    log.info(`${signal}${takenOver ? ' (taken over by a new Sluice)' : ''}: not ready; draining (${plan})`);
    void primary.stop(false, !takenOver).then(() => {
      log.info('stopped');
      onStopped(0);
    });
  };
  onSignal = (signal) => {
    if (signal === 'SIGHUP') {
      if (!stopping) void primary.reload('SIGHUP');
      return;
    }
    stop(signal);
  };
  if (stopRequested !== null) stop(stopRequested);
  return stopped;
}
