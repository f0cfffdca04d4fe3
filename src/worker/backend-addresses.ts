/**
 * Where each backend slot connects to, for this worker. A static backend's host comes with its config; a
 * DNS discovery slot's address comes from the primary (backend-addresses messages) and may change while
 * the slot keeps its counters. Slots are shared by every live generation (a backend that stays across a
 * reload keeps its slot), so this table is per worker, not per generation; a discovered address's
 * identity (its URL with the address) is handed to the sticky cookies and hash rings of every live
 * generation, so they agree with every other replica about which backend a key or cookie names.
 */
import type { BackendAddress } from '../shared/messages.js';
import type { Generation } from './generation.js';
import { context } from './context.js';

/** Host to connect to per backend slot; '' = an empty discovery slot (or a slot no generation uses). */
const hosts: string[] = [];
/** Identity per discovery slot, as the primary last sent it ('' = empty). */
const identities = new Map<number, string>();

/** The address to connect to for `backend` now ('' when its discovery slot is empty). */
export function hostOf(backend: number): string {
  return hosts[backend] ?? '';
}

/** A generation starts serving: its static backends' hosts, and the identities of discovered addresses. */
export function adoptAddresses(generation: Generation): void {
  for (const spec of generation.snapshot.backends) {
    if (spec.dnsName === '') {
      hosts[spec.index] = spec.host;
      continue;
    }
    const identity = identities.get(spec.index);
    if (identity !== undefined) generation.setIdentity(spec.index, identity);
  }
}

/** Discovery moved addresses in or out of slots. */
export function applyAddresses(addresses: readonly BackendAddress[]): void {
  const { live } = context();
  for (const { backend, host, identity } of addresses) {
    hosts[backend] = host;
    identities.set(backend, identity);
    for (const generation of live) generation.setIdentity(backend, identity);
  }
}
