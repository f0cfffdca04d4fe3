/**
 * The primary's half of the access log: unpacks the batches workers send (worker/access-log.ts) and
 * appends one JSON line per closed connection, per plain HTTP request and per refused request (a
 * WebSocket upgrade Sluice or the backend refused: kind `websocket_rejected`; an unrouted plain request:
 * kind `http` with a RejectReason) to accessLog.filePath (or
 * standard output) through an asynchronous sonic-boom stream (pino.destination), so a slow disk never
 * blocks the primary. Field names follow Traefik's JSON access log where one exists. "Standard output" is
 * the descriptor stdout.ts kept for it, free of uWebSockets.js's debug prints.
 */
import { Unpackr } from 'msgpackr';
import pino from 'pino';
import type { Snapshot } from '../config/snapshot.js';
import type { AccessRecord, HttpAccessRecord, RejectedRecord } from '../shared/messages.js';
import { SIDES } from '../shared/metrics-plan.js';
import { log } from './log.js';
import { operatorStdout, stdoutSharedBecause } from './stdout.js';

export interface AccessLogWriter {
  write(worker: number, packed: Uint8Array): void;
  /** Write out what is buffered (at exit). */
  flush(): void;
}

export function openAccessLog(snapshot: Snapshot): AccessLogWriter | null {
  if (!snapshot.accessLog.enabled) return null;
  const toStdout = snapshot.accessLog.filePath === '';
  const shared = toStdout ? stdoutSharedBecause() : null;
  if (shared !== null) log.warn(`the access log shares standard output with uWebSockets.js's debug lines (${shared}): set accessLog.filePath to keep it apart`);
  const destination = pino.destination({ dest: toStdout ? operatorStdout() : snapshot.accessLog.filePath, sync: false, mkdir: true });
  const unpackr = new Unpackr({ useRecords: false });
  return {
    write(worker, packed) {
      const records = unpackr.unpack(packed) as (AccessRecord | HttpAccessRecord | RejectedRecord)[];
      let lines = '';
      for (const record of records) {
        if (record[0] === 'http') {
          lines += httpLine(record as HttpAccessRecord, worker);
          continue;
        }
        if (record[0] === 'rejected') {
          lines += rejectedLine(record as RejectedRecord, worker);
          continue;
        }
        const [endedAt, client, entryPoint, router, service, backend, durationMs, mIn, bIn, mOut, bOut, code, side] = record as AccessRecord;
        lines += `${JSON.stringify({
          time: new Date(endedAt).toISOString(),
          kind: 'websocket',
          ClientHost: client,
          EntryPointName: entryPoint,
          RouterName: router,
          ServiceName: service,
          ServiceURL: backend,
          Duration: durationMs * 1e6,
          DurationMs: durationMs,
          ClientToBackendMessages: mIn,
          ClientToBackendBytes: bIn,
          BackendToClientMessages: mOut,
          BackendToClientBytes: bOut,
          CloseCode: code,
          ClosedBy: SIDES[side] ?? 'client',
          worker,
        })}\n`;
      }
      destination.write(lines);
    },
    flush() {
      try {
        destination.flushSync();
      } catch {
        // not ready yet (nothing written) or already closed
      }
    },
  };
}

/** One plain HTTP request, with Traefik's access-log field names. */
function httpLine(record: HttpAccessRecord, worker: number): string {
  const [, endedAt, client, entryPoint, router, service, backend, durationMs, method, path, status, requestBytes, responseBytes] = record;
  return `${JSON.stringify({
    time: new Date(endedAt).toISOString(),
    kind: 'http',
    ClientHost: client,
    EntryPointName: entryPoint,
    RouterName: router,
    ServiceName: service,
    ServiceURL: backend,
    RequestMethod: method,
    RequestPath: path,
    DownstreamStatus: status,
    RequestContentSize: requestBytes,
    DownstreamContentSize: responseBytes,
    Duration: durationMs * 1e6,
    DurationMs: durationMs,
    worker,
  })}\n`;
}

/** A refused request: Traefik's field names, plus RejectReason (Sluice's own) saying why. */
function rejectedLine(record: RejectedRecord, worker: number): string {
  const [, endedAt, client, entryPoint, router, service, backend, upgrade, method, host, path, status, reason, durationMs] = record;
  return `${JSON.stringify({
    time: new Date(endedAt).toISOString(),
    kind: upgrade === 1 ? 'websocket_rejected' : 'http',
    ClientHost: client,
    EntryPointName: entryPoint,
    RouterName: router,
    ServiceName: service,
    ServiceURL: backend,
    RequestMethod: method,
    RequestHost: host,
    RequestPath: path,
    DownstreamStatus: status,
    RejectReason: reason,
    Duration: durationMs * 1e6,
    DurationMs: durationMs,
    worker,
  })}\n`;
}
