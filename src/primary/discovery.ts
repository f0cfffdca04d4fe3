/**
 * DNS discovery (a Kubernetes headless Service, Docker Swarm's `tasks.<name>`): each server of a
 * service with `discovery: { type: dns }` owns `maxAddresses` backend slots; every refreshInterval
 * its host name is resolved and the slots are made to hold exactly the addresses found. A new
 * address takes a free slot (preferring one with no connections left from a previous address) and
 * joins with slow start; an address that vanished leaves its slot, which is marked down and drained
 * (close 1012, paced). A failed lookup changes nothing: a resolver hiccup must not drain a pool.
 *
 * With `dns.servers` the names are asked of those servers (A and AAAA); without, through the
 * system's resolver (getaddrinfo: /etc/hosts, then /etc/resolv.conf), as the pod itself resolves.
 */
import dns from 'node:dns';
import type { BackendSpec, ServiceSpec, Snapshot } from '../config/snapshot.js';
import { bracketHost } from '../shared/address.js';
import type { SharedViews } from '../shared/layout.js';
import type { BackendAddress } from '../shared/messages.js';
import type { BackendHealth } from './backend-health.js';
import { log } from './log.js';

interface Group {
  readonly name: string;
  /** The slots' URLs and the name: a reload that keeps it keeps the group and its addresses. */
  readonly key: string;
  slots: readonly BackendSpec[];
  service: ServiceSpec;
  refreshIntervalMs: number;
  /** Address per slot ('' = empty). */
  readonly addresses: string[];
  resolved: boolean;
  timer: NodeJS.Timeout | null;
}

export interface DiscoveryHooks {
  /** The slots whose address changed: tell every worker (and remember for new ones). */
  publish(addresses: readonly BackendAddress[]): void;
  drain(backend: number, windowMs: number, reason: string, untilUp: boolean): void;
}

/** The URL a discovered slot stands for: the server URL with the address in place of the name. */
export function slotIdentity(spec: BackendSpec, address: string): string {
  if (address === '') return '';
  return `${spec.tls ? 'wss' : 'ws'}://${bracketHost(address)}:${spec.port}${spec.pathPrefix}`;
}

export class Discovery {
  private groups: Group[] = [];
  private resolver: dns.promises.Resolver | null = null;
  private resolverKey = '';
  private stopped = false;

  constructor(
    snapshot: Snapshot,
    private readonly shared: SharedViews,
    private readonly health: BackendHealth,
    private readonly hooks: DiscoveryHooks,
  ) {
    this.apply(snapshot, false);
  }

  /**
   * Take a (new) config's discovered servers: a group whose slots and name are unchanged keeps its
   * addresses and timer; a new one is resolved now when `running` (and joins with slow start); a group
   * that left stops (its slots are backends the reload removed, drained or kept as their service says).
   */
  apply(snapshot: Snapshot, running: boolean): void {
    const next: Group[] = [];
    for (const service of snapshot.services) {
      if (service.discovery === null) continue;
      const { maxAddresses, refreshIntervalMs } = service.discovery;
      const specs = service.backends.map((b) => snapshot.backends.find((spec) => spec.index === b)!);
      for (let first = 0; first < specs.length; first += maxAddresses) {
        const slots = specs.slice(first, first + maxAddresses);
        const key = JSON.stringify([service.name, slots.map((s) => [s.index, s.url])]);
        const existing = this.groups.find((g) => g.key === key);
        if (existing !== undefined) {
          existing.slots = slots;
          existing.service = service;
          existing.refreshIntervalMs = refreshIntervalMs;
          next.push(existing);
          continue;
        }
        next.push({ name: slots[0]!.dnsName, key, slots, service, refreshIntervalMs, addresses: slots.map(() => ''), resolved: false, timer: null });
      }
    }
    for (const group of this.groups) if (!next.includes(group) && group.timer !== null) clearTimeout(group.timer);
    const added = next.filter((g) => !this.groups.includes(g));
    this.groups = next;
    const resolverKey = snapshot.dnsServers.join(',');
    if (resolverKey !== this.resolverKey || (this.resolver === null && resolverKey !== '')) {
      this.resolverKey = resolverKey;
      if (snapshot.dnsServers.length > 0) {
        this.resolver = new dns.promises.Resolver({ timeout: 2000, tries: 2 });
        this.resolver.setServers([...snapshot.dnsServers]);
      } else this.resolver = null;
    }
    if (running) {
      for (const group of added) {
        // Joining a running pool: not the first resolution, so new addresses ramp up.
        group.resolved = true;
        void this.refresh(group);
      }
    }
  }

  get active(): boolean {
    return this.groups.length > 0;
  }

  /** Resolve every name once (the first resolution joins without slow start), then keep refreshing. */
  async start(): Promise<void> {
    await Promise.all(this.groups.map((group) => this.refresh(group)));
  }

  stop(): void {
    this.stopped = true;
    for (const group of this.groups) if (group.timer !== null) clearTimeout(group.timer);
  }

  /** The address slot `backend` holds now ('' when empty or not a discovery slot). */
  addressOf(backend: number): string {
    for (const group of this.groups) {
      const at = group.slots.findIndex((s) => s.index === backend);
      if (at >= 0) return group.addresses[at]!;
    }
    return '';
  }

  /** The whole table, for a worker that starts now. */
  table(): BackendAddress[] {
    const table: BackendAddress[] = [];
    for (const group of this.groups) {
      group.slots.forEach((spec, i) => table.push({ backend: spec.index, host: group.addresses[i]!, identity: slotIdentity(spec, group.addresses[i]!) }));
    }
    return table;
  }

  private async lookup(name: string): Promise<string[] | null> {
    try {
      if (this.resolver === null) {
        const found = await dns.promises.lookup(name, { all: true, verbatim: true });
        return found.map((a) => a.address);
      }
      const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(name), this.resolver.resolve6(name)]);
      const noData = (r: PromiseSettledResult<string[]>): boolean =>
        r.status === 'rejected' && ['ENODATA', 'ENOTFOUND'].includes((r.reason as NodeJS.ErrnoException).code ?? '');
      if ((v4.status === 'rejected' && !noData(v4)) || (v6.status === 'rejected' && !noData(v6))) {
        const reason = v4.status === 'rejected' && !noData(v4) ? v4.reason : (v6 as PromiseRejectedResult).reason;
        throw reason;
      }
      return [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // NXDOMAIN is an answer (no addresses); anything else is a failed lookup.
      if (code === 'ENOTFOUND' && this.resolver === null) return [];
      log.warn(`discovery: cannot resolve '${name}': ${code ?? (error as Error).message}; keeping its ${this.countOf(name)} address(es)`);
      return null;
    }
  }

  private countOf(name: string): number {
    return this.groups.filter((g) => g.name === name).reduce((n, g) => n + g.addresses.filter((a) => a !== '').length, 0);
  }

  private async refresh(group: Group): Promise<void> {
    const found = await this.lookup(group.name);
    if (this.stopped || !this.groups.includes(group)) return;
    if (found !== null) this.applyFound(group, [...new Set(found)].sort());
    group.timer = setTimeout(() => void this.refresh(group), group.refreshIntervalMs);
    group.timer.unref();
  }

  private applyFound(group: Group, found: string[]): void {
    const first = !group.resolved;
    group.resolved = true;
    const changes: BackendAddress[] = [];
    const service = group.service;
    // Vanished addresses leave their slots first, so a moved address can reuse one at once.
    group.addresses.forEach((address, i) => {
      if (address === '' || found.includes(address)) return;
      const spec = group.slots[i]!;
      this.health.setPresent(spec.index, false, false);
      this.hooks.drain(spec.index, service.drainWindowMs, `address ${address} left DNS`, false);
      group.addresses[i] = '';
      changes.push({ backend: spec.index, host: '', identity: '' });
      log.info(`discovery: ${group.name}: ${address} is gone (slot ${spec.index}, draining)`);
    });
    const added: number[] = [];
    for (const address of found) {
      if (group.addresses.includes(address)) continue;
      const free = this.freeSlot(group);
      if (free < 0) {
        log.warn(`discovery: ${group.name}: ignoring ${address}: all ${group.slots.length} slots are taken (raise discovery.maxAddresses)`);
        continue;
      }
      const spec = group.slots[free]!;
      group.addresses[free] = address;
      changes.push({ backend: spec.index, host: address, identity: slotIdentity(spec, address) });
      added.push(spec.index);
      log.info(`discovery: ${group.name}: ${address} joins (slot ${spec.index})`);
    }
    if (changes.length === 0) return;
    // Workers learn the address before the bit goes up; a worker that picks the slot before its
    // message arrived skips it (upgrade.ts), so the order only saves a wasted pick.
    this.hooks.publish(changes);
    for (const backend of added) this.health.setPresent(backend, true, !first);
  }

  /** An empty slot, preferring one whose previous address's connections are all gone. */
  private freeSlot(group: Group): number {
    let fallback = -1;
    for (let i = 0; i < group.slots.length; i++) {
      if (group.addresses[i] !== '') continue;
      if (Atomics.load(this.shared.backendActive, group.slots[i]!.index) === 0) return i;
      if (fallback < 0) fallback = i;
    }
    return fallback;
  }
}
