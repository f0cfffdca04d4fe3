/**
 * The plain-HTTP part of the admin API's documents (/api/overview, /api/routers, /api/services,
 * /api/backends): requests by status class, bytes, errors by reason and requests in flight, summed from the
 * same series as /metrics (metrics-store.ts). The dashboard's "HTTP requests/s" reads `http.requests` of the
 * overview and differentiates it.
 */
import type { MetricsView } from './metrics-store.js';
import type { SharedViews } from '../shared/layout.js';
import { HTTP_BACKEND_FIELDS, HTTP_CELL, HTTP_CODES, HTTP_ERROR_REASONS, HttpField, type RoutePlan } from '../shared/metrics-plan.js';

export interface HttpSummary {
  /** Requests answered (every method and status). */
  readonly requests: number;
  readonly byCode: Record<(typeof HTTP_CODES)[number], number>;
  /** Requests in flight to these backends now (all workers). */
  readonly inFlight: number;
  readonly bytes: { readonly request: number; readonly response: number };
  readonly errors: Record<(typeof HTTP_ERROR_REASONS)[number], number>;
}

/** HTTP totals of `routes`, restricted to backend slot `backend` when ≥ 0; bytes, errors and in-flight counts
 *  of `backends`. */
export function httpSummary(view: MetricsView, shared: SharedViews, routes: readonly RoutePlan[], backends: readonly number[], backend = -1): HttpSummary {
  const { snapshot, plan } = view.current;
  const byCode = Object.fromEntries(HTTP_CODES.map((c) => [c, 0])) as Record<(typeof HTTP_CODES)[number], number>;
  let requests = 0;
  for (const route of routes) {
    const pool = snapshot.services[route.service]!.backends;
    for (let position = 0; position <= pool.length; position++) {
      const slot = position < pool.length ? pool[position]! : -1;
      if (backend >= 0 && slot !== backend) continue;
      const cell = route.httpBase + position * HTTP_CELL;
      for (let i = 0; i < HTTP_CELL; i++) {
        const n = view.slab(cell + i);
        if (n === 0) continue;
        requests += n;
        byCode[HTTP_CODES[i % HTTP_CODES.length]!] += n;
      }
    }
  }
  const errors = Object.fromEntries(HTTP_ERROR_REASONS.map((r) => [r, 0])) as Record<(typeof HTTP_ERROR_REASONS)[number], number>;
  let request = 0;
  let response = 0;
  let inFlight = 0;
  for (const slot of backends) {
    const local = plan.backendLocal[slot]!;
    if (local < 0) continue;
    const row = plan.httpBackendBase + local * HTTP_BACKEND_FIELDS;
    request += view.slab(row + HttpField.RequestBytes);
    response += view.slab(row + HttpField.ResponseBytes);
    HTTP_ERROR_REASONS.forEach((reason, r) => (errors[reason] += view.slab(row + HttpField.Errors + r)));
    inFlight += Atomics.load(shared.backendHttpActive, slot);
  }
  return { requests, byCode, inFlight, bytes: { request, response }, errors };
}
