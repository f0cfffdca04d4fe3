/**
 * Backend slots by identity: which shared-memory slot (layout.ts) each backend owns. A backend is the same
 * backend across reloads when its service name and server URL are the same (`URL#N` for the N-th DNS
 * discovery slot of a server), so it keeps its slot, and with it its live connection count, health bit,
 * slow-start clock and traffic counters: a reload never resets least-connections or sends a wave to the
 * backend that looks emptiest.
 *
 * A slot leaves its identity only when no live config generation names it any more (the generations still
 * carrying connections are the primary's to track, src/primary/live-config.ts); the caller folds its
 * counters into carried totals and zeroes them before the slot is handed to another backend.
 */

/** Slots made at start: room for the first config four times over, and at least this many. */
const MIN_CAPACITY = 1024;

export function identityOf(service: string, url: string): string {
  return `${service}\u0000${url}`;
}

export function splitIdentity(identity: string): { service: string; url: string } {
  const at = identity.indexOf('\u0000');
  return { service: identity.slice(0, at), url: identity.slice(at + 1) };
}

/** A tentative assignment for one config being compiled; nothing changes until commit(). */
export class SlotAssignment {
  /** Identity → slot for every backend of the config being compiled. */
  readonly slots = new Map<string, number>();
  private readonly taken = new Set<number>();
  /** Slots the config needed but the table could not give. */
  missing = 0;

  constructor(private readonly table: BackendSlots) {}

  assign = (service: string, url: string): number => {
    const identity = identityOf(service, url);
    const known = this.slots.get(identity);
    if (known !== undefined) return known;
    let slot = this.table.slotOf(identity);
    if (slot < 0) slot = this.table.freeSlot(this.taken);
    if (slot < 0) {
      // Compile goes on (every other problem still gets reported); the caller refuses the config.
      this.missing++;
      slot = 0;
    } else this.taken.add(slot);
    this.slots.set(identity, slot);
    return slot;
  };
}

export class BackendSlots {
  private readonly byIdentity = new Map<string, number>();
  private readonly identities: (string | null)[];

  constructor(readonly capacity: number) {
    this.identities = Array.from({ length: capacity }, () => null);
  }

  /** The capacity to make at start for a first config with `backends` backends. */
  static capacityFor(backends: number): number {
    return Math.max(MIN_CAPACITY, backends * 4);
  }

  slotOf(identity: string): number {
    return this.byIdentity.get(identity) ?? -1;
  }

  identityAt(slot: number): string | null {
    return this.identities[slot] ?? null;
  }

  /** A slot with no identity, not in `taken`; -1 when none is left. */
  freeSlot(taken: ReadonlySet<number>): number {
    for (let slot = 0; slot < this.capacity; slot++) if (this.identities[slot] === null && !taken.has(slot)) return slot;
    return -1;
  }

  get used(): number {
    return this.byIdentity.size;
  }

  begin(): SlotAssignment {
    return new SlotAssignment(this);
  }

  /** Make the assignment's new identities real (slots already held keep theirs). Returns the new slots. */
  commit(assignment: SlotAssignment): number[] {
    const added: number[] = [];
    for (const [identity, slot] of assignment.slots) {
      if (this.byIdentity.get(identity) === slot) continue;
      this.byIdentity.set(identity, slot);
      this.identities[slot] = identity;
      added.push(slot);
    }
    return added;
  }

  /** The slot no longer belongs to any live generation: it may be given to another backend. */
  release(slot: number): void {
    const identity = this.identities[slot];
    if (identity === null || identity === undefined) return;
    this.byIdentity.delete(identity);
    this.identities[slot] = null;
  }
}
