/**
 * The last step of an upgrade: turning the client's HTTP request into a uWebSockets.js WebSocket once
 * the backend said 101, shaped around a use-after-free read in uWebSockets.js 20.30 that closed a
 * client right after its 101 (1006 before its first message).
 *
 * uWS's HttpResponse::cork(), once its callback returned, tells an upgraded socket from an HTTP one by
 * comparing addresses. res.upgrade() reallocates the 288-byte HTTP socket to the 184-byte WebSocket;
 * glibc shrinks in place, so the address stays and cork() goes on to read HttpResponseData::state at
 * offset 0xf4 — inside the 112 bytes realloc() just gave back. Read as "Connection: close, response
 * done" with nothing buffered, it shuts the new WebSocket down (the client gets the 101, then a FIN).
 * Those bytes keep the old, harmless state unless something allocates them before cork() returns, and
 * JavaScript run in between does: V8 lazily parses and batch-compiles functions there, and the
 * parser's small mallocs took that chunk (gdb watchpoints; the state read was 0x7ff0, the upper half
 * of a heap pointer). native/README.md has the whole trace.
 *
 * So no JavaScript runs between the reallocation and the check: the `open` handler is a bound builtin
 * (Reflect.set into one slot: no bytecode, so no compilation, no interrupt, no allocation) and the cork
 * callback is res.upgrade itself, bound. The WebSocket is picked up once cork() has returned.
 */
import type uWS from 'uWebSockets.js';
import type { TunnelRef } from './tunnel.js';

/** The WebSocket uWS opened during the current res.upgrade(), null outside one. */
const openedSlot: { ws: uWS.WebSocket<TunnelRef> | null } = { ws: null };

/** uWS `open` (runs inside res.upgrade): only park the WebSocket, see the file comment. */
export const onClientOpen = Reflect.set.bind(undefined, openedSlot, 'ws') as unknown as (ws: uWS.WebSocket<TunnelRef>) => void;

/**
 * Upgrade `res` with `protocol` (and a Set-Cookie header when `setCookie` is not empty); returns the
 * client's WebSocket, or null when uWS did not open one. The caller checks whether uWS also closed it
 * during the upgrade (its `close` handler may run inside res.upgrade when the client is gone).
 */
export function upgradeClient(
  res: uWS.HttpResponse,
  userData: TunnelRef,
  key: string,
  protocol: string,
  uwsContext: uWS.us_socket_context_t,
  setCookie: string,
  headers: readonly (readonly [string, string])[] | null = null,
  extensions = '',
): uWS.WebSocket<TunnelRef> | null {
  if (setCookie !== '' || headers !== null) {
    // upgrade() keeps a status already written, so these go out with the 101 (in a write of their own:
    // the upgrade's cork below must hold no JavaScript). `headers`: what a middleware adds to the answer.
    res.cork(() => {
      res.writeStatus('101 Switching Protocols');
      if (setCookie !== '') res.writeHeader('set-cookie', setCookie);
      if (headers !== null) for (const [name, value] of headers) res.writeHeader(name, value);
    });
  }
  res.cork(res.upgrade.bind(res, userData, key, protocol, extensions, uwsContext) as () => void);
  const ws = openedSlot.ws;
  openedSlot.ws = null;
  return ws;
}
