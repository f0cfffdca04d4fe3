/**
 * What a failed attempt of a plain HTTP exchange (http-proxy.ts) leads to, kept in one place so the retry
 * rules and the answers they end in read together: a failed connect is retried on another backend (never one
 * already tried) for any request whose body can be replayed; a connection that fails after the request went
 * out is retried only for idempotent methods; the last failure is answered 502 (refused, reset, invalid
 * answer), 504 (dial or response-header timeout), or 503 with Retry-After when no backend is up, with a short
 * body naming the service, as for upgrades. Runs once per failed attempt, never per chunk.
 */
import { HttpError } from '../shared/metrics-plan.js';
import { backendFailed, Failure } from './backend-failures.js';
import type { HttpExchange } from './http-proxy.js';

/** Safe to send twice (RFC 9110 §9.2.2): retried after a connection failed with the request already sent. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** No backend left to try: 503 when none was tried, else the answer for the last failure. */
export function noBackendLeft(x: HttpExchange): void {
  const service = x.gen.service(x.service);
  const name = service.name;
  if (x.attempts === 0) {
    const retryAfter = String(service.retryAfterSeconds);
    x.answerError(503, `no backend available for service '${name}'`, [['retry-after', retryAfter]]);
  } else if (x.lastFailure === HttpError.ConnectTimeout) x.answerError(504, `timed out connecting to a backend of service '${name}'`);
  else x.answerError(502, `no backend of service '${name}' accepted the connection`);
}

/** The attempt failed before any of the response went out (undici's error `code`, `sent`: the request had
 *  gone out): count it, then retry or answer. */
export function attemptFailed(x: HttpExchange, code: string, sent: boolean): void {
  const reason = classify(code, sent);
  x.countHttpError(reason);
  x.lastFailure = reason;
  if (reason === HttpError.ConnectRefused || reason === HttpError.ConnectTimeout || reason === HttpError.BackendReset) {
    backendFailed(x.gen, x.backend, reason === HttpError.ConnectRefused ? Failure.ConnectRefused : reason === HttpError.ConnectTimeout ? Failure.Timeout : Failure.Reset);
  }
  const replayable = x.replayable();
  if ((reason === HttpError.ConnectRefused || reason === HttpError.ConnectTimeout) && replayable) {
    x.connectNext();
    return;
  }
  if (reason === HttpError.BackendReset && replayable && IDEMPOTENT.has(x.request.method)) {
    if (x.reused && !x.staleRetried) {
      // A kept-alive connection the backend had just closed: one fresh try on the same backend.
      x.staleRetried = true;
      x.attempt(x.backend);
      return;
    }
    x.connectNext();
    return;
  }
  const name = x.gen.service(x.service).name;
  switch (reason) {
    case HttpError.ConnectTimeout:
      x.answerError(504, `timed out connecting to a backend of service '${name}'`);
      return;
    case HttpError.ResponseTimeout:
      x.answerError(504, `a backend of service '${name}' did not answer within responseHeaderTimeout`);
      return;
    case HttpError.InvalidResponse:
      x.answerError(502, `a backend of service '${name}' sent an invalid response`);
      return;
    case HttpError.BackendReset:
      x.answerError(502, `a backend of service '${name}' closed the connection before answering`);
      return;
    default:
      x.answerError(502, `no backend of service '${name}' accepted the connection`);
  }
}

/** What went wrong, from undici's error code and whether the request had gone out. */
function classify(code: string, sent: boolean): HttpError {
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return HttpError.ConnectTimeout;
    case 'UND_ERR_HEADERS_TIMEOUT':
      return HttpError.ResponseTimeout;
    case 'UND_ERR_HEADERS_OVERFLOW':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
      return HttpError.InvalidResponse;
    default:
      // Any parser error (llhttp's HPE_* codes, which the native client uses too).
      if (code.startsWith('HPE_')) return HttpError.InvalidResponse;
      return sent ? HttpError.BackendReset : HttpError.ConnectRefused;
  }
}
