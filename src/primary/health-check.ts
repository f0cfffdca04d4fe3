/**
 * Active health checks, run by the primary (never by the workers, so N workers do not multiply the
 * probes): each backend of a service with `healthCheck` is asked `method path` every `interval`
 * (`unhealthyInterval` while down), over http or https. An answer with the expected status (or any
 * 2xx/3xx) within `timeout` is a success. `fall` failures in a row mark an up backend down, `rise`
 * successes in a row bring a down one back; the verdict goes to BackendHealth, which owns the
 * shared bits. Probes are spread over the first interval so a large pool is not checked in a burst.
 *
 * Logs follow the state, not the probes: the first failing check after a passing one is a warning with
 * its reason (the status, the error, the timeout), the first passing one after failures an info line,
 * and the verdicts (down, up) are logged by BackendHealth with the last reason; a backend that keeps
 * failing writes nothing more. Every result is also kept for /api/backends (lastCheck).
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { BackendSpec, HealthCheckSpec, Snapshot, TransportSpec } from '../config/snapshot.js';
import { bracketHost } from '../shared/address.js';
import type { BackendHealth } from './backend-health.js';
import { log } from './log.js';

interface Probe {
  spec: BackendSpec;
  readonly check: HealthCheckSpec;
  /** The service's serversTransport: https checks trust what the WebSocket connections trust. */
  readonly transport: TransportSpec;
  /** What the probe was built from: a reload that changes it starts the probe over. */
  readonly key: string;
  /** Consecutive results of the current kind (positive: successes, negative: failures). */
  streak: number;
  healthy: boolean;
  timer: NodeJS.Timeout | null;
  /** The discovery slot's address changed: restart the streak. */
  host: string;
  /** Stopped (removed by a reload, or the checker stopped): a probe in flight is ignored. */
  stopped: boolean;
}

export class HealthChecker {
  /** By backend slot. */
  private readonly probes = new Map<number, Probe>();
  private stopped = false;

  constructor(
    snapshot: Snapshot,
    private readonly health: BackendHealth,
    /** The address to probe: the static host, or a discovery slot's current address ('' = empty). */
    private readonly hostOf: (spec: BackendSpec) => string,
  ) {
    this.apply(snapshot, false);
  }

  start(): void {
    this.startAll([...this.probes.values()]);
  }

  /**
   * A reload: a backend whose check, transport and URL are unchanged keeps its probe, streak and
   * verdict; a changed or new one starts over; a probe of a backend that left stops. `running`: start
   * new probes now (false before start()).
   */
  apply(snapshot: Snapshot, running: boolean): void {
    const fresh: Probe[] = [];
    const seen = new Set<number>();
    for (const spec of snapshot.backends) {
      const service = snapshot.services[spec.service]!;
      const check = service.healthCheck;
      if (check === null) continue;
      const transport = snapshot.transports[service.transport]!;
      const key = JSON.stringify([check, transport, spec.url, spec.host, spec.port]);
      seen.add(spec.index);
      const existing = this.probes.get(spec.index);
      if (existing !== undefined && existing.key === key) {
        existing.spec = spec;
        continue;
      }
      if (existing !== undefined) this.stopProbe(existing);
      const probe: Probe = { spec, check, transport, key, streak: 0, healthy: true, timer: null, host: '', stopped: false };
      this.probes.set(spec.index, probe);
      // A check that changed starts from "healthy", as a new one does.
      if (existing !== undefined && !existing.healthy) this.health.setHealthy(spec.index, true);
      fresh.push(probe);
    }
    for (const [slot, probe] of this.probes) {
      if (seen.has(slot)) continue;
      this.stopProbe(probe);
      this.probes.delete(slot);
    }
    if (running) this.startAll(fresh);
  }

  private startAll(probes: readonly Probe[]): void {
    probes.forEach((probe, i) => {
      // First round at once, spread over up to a tenth of the interval.
      this.schedule(probe, Math.min(probe.check.intervalMs / 10, 1000) * (i / Math.max(1, probes.length)));
    });
  }

  private stopProbe(probe: Probe): void {
    probe.stopped = true;
    if (probe.timer !== null) clearTimeout(probe.timer);
    probe.timer = null;
  }

  stop(): void {
    this.stopped = true;
    for (const probe of this.probes.values()) this.stopProbe(probe);
  }

  private schedule(probe: Probe, delayMs: number): void {
    if (this.stopped || probe.stopped) return;
    probe.timer = setTimeout(() => {
      probe.timer = null;
      this.run(probe);
    }, delayMs);
    probe.timer.unref();
  }

  private run(probe: Probe): void {
    const host = this.hostOf(probe.spec);
    if (host !== probe.host) {
      probe.host = host;
      probe.streak = 0;
      probe.healthy = true;
    }
    if (host === '') {
      this.schedule(probe, probe.check.intervalMs);
      return;
    }
    checkOnce(probe.spec, probe.check, probe.transport, host, (ok, reason) => {
      if (this.stopped || probe.stopped || probe.host !== host) return;
      this.record(probe, ok, reason);
      this.schedule(probe, probe.healthy ? probe.check.intervalMs : probe.check.unhealthyIntervalMs);
    });
  }

  private record(probe: Probe, ok: boolean, reason: string): void {
    const index = probe.spec.index;
    this.health.recordCheck(index, { at: Date.now(), ok, reason });
    const changed = ok ? probe.streak < 0 : probe.streak >= 0;
    probe.streak = ok ? Math.max(probe.streak, 0) + 1 : Math.min(probe.streak, 0) - 1;
    let verdict = '';
    if (probe.healthy && probe.streak <= -probe.check.fall) {
      probe.healthy = false;
      verdict = `${-probe.streak} health check(s) in a row failed, the last: ${reason}`;
    } else if (!probe.healthy && probe.streak >= probe.check.rise) {
      probe.healthy = true;
      verdict = `${probe.streak} health check(s) in a row passed`;
    } else if (changed) {
      // A change the verdict does not log yet (fall or rise not reached).
      const what = this.health.describe(index);
      if (ok) log.info(`${what} passed its health check again (${probe.streak} of rise ${probe.check.rise})`);
      else log.warn(`${what} failed its health check: ${reason} (${-probe.streak} of fall ${probe.check.fall})`);
      return;
    } else return;
    this.health.setHealthy(index, probe.healthy, verdict);
  }
}

/** One probe; `done(true, '')` for a healthy answer, `done(false, why)` otherwise ('status 503
 *  (expected 2xx or 3xx)', the error's message, 'no answer within 300 ms'). Never throws; every path
 *  calls done once. */
export function checkOnce(spec: BackendSpec, check: HealthCheckSpec, transport: TransportSpec, host: string, done: (ok: boolean, reason: string) => void): void {
  const secure = check.scheme === '' ? spec.tls : check.scheme === 'https';
  const port = check.port !== 0 ? check.port : spec.port;
  const headers: Record<string, string> = { 'user-agent': 'sluice-health-check', connection: 'close' };
  const hostHeader = check.hostname !== '' ? check.hostname : spec.dnsName !== '' ? spec.dnsName : bracketHost(spec.host);
  headers.host = port === (secure ? 443 : 80) ? hostHeader : `${hostHeader}:${port}`;
  for (const [name, value] of check.headers) headers[name.toLowerCase()] = value;
  let finished = false;
  const finish = (ok: boolean, reason: string): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    done(ok, reason);
  };
  const options = { host, port, method: check.method, path: check.path, headers, agent: false as const };
  const request = secure
    ? https.request({
        ...options,
        rejectUnauthorized: !transport.insecureSkipVerify,
        ca: transport.rootCAs !== '' ? transport.rootCAs : undefined,
        servername: transport.serverName || check.hostname || spec.dnsName || (net.isIP(spec.host) === 0 ? spec.host : undefined),
      })
    : http.request(options);
  const timer = setTimeout(() => {
    request.destroy();
    finish(false, `no answer within ${check.timeoutMs} ms`);
  }, check.timeoutMs);
  request.on('response', (response) => {
    const status = response.statusCode ?? 0;
    response.resume();
    request.destroy();
    const ok = check.status !== 0 ? status === check.status : status >= 200 && status < 400;
    finish(ok, ok ? '' : `status ${status} (expected ${check.status !== 0 ? check.status : '2xx or 3xx'})`);
  });
  request.on('error', (error) => finish(false, error.message));
  request.end();
}
