/**
 * The keep-alive connections of one generation to one backend, for plain HTTP: a stack of undici Clients
 * (one connection each, no pipelining), Traefik's http.Transport semantics. Connections in use are not
 * capped (Socket.IO long-polls held for 25 s must never queue behind each other); idle ones are capped by
 * serversTransport.maxIdleConnsPerHost (default 200) and close after idleConnTimeout. The newest idle
 * connection is reused first, so a quiet period lets the oldest time out.
 *
 * Connecting follows the servers transport: dialTimeout, sourceAddresses (in turn, as for WebSockets), and for https:// backends rootCAs,
 * insecureSkipVerify and serverName (default: the backend URL's host name, none for an address).
 * A DNS discovery slot whose address changes gets fresh connections to the new address.
 *
 * Two kinds of connection carry the requests: on the native leg (the addon built, SLUICE_NATIVE not 0) a plain
 * backend gets http-native-client.ts's connections for every request whose body is absent or already
 * collected (a backend named by host name once its address is known: native-leg.ts resolves and keeps it);
 * undici carries TLS backends, request bodies streamed from the client, and a host name's first requests.
 * Each kind has its own idle stack; maxIdleConnsPerHost caps the two together.
 */
import net from 'node:net';
import { Client } from 'undici';
import type { BackendSpec, TransportSpec } from '../config/snapshot.js';
import { bracketHost } from '../shared/address.js';
import { MAX_RESPONSE_HEAD, NativeHttpConnection } from './http-native-client.js';
import { nativeAvailable, resolvedAddress } from './native-leg.js';
import { sourceAddressFor } from './backend-leg.js';

/** One keep-alive connection: an undici Client with pipelining 1, or a native one. */
export type PooledClient = Client | NativeHttpConnection;

function closeClient(client: PooledClient): void {
  if (client instanceof NativeHttpConnection) client.close();
  else client.close().catch(() => undefined);
}

function destroyClient(client: PooledClient): void {
  if (client instanceof NativeHttpConnection) client.destroy();
  else client.destroy().catch(() => undefined);
}

export class BackendPool {
  private readonly idle: Client[] = [];
  private readonly idleNative: NativeHttpConnection[] = [];
  private readonly all = new Set<PooledClient>();
  /** Native connections may serve this backend (plain, and the addon is in use). */
  private readonly native: boolean;
  private readonly forgetFn = (c: NativeHttpConnection): void => this.forget(c);
  private host = '';
  private closed = false;
  private readonly options: Client.Options;

  constructor(
    private readonly spec: BackendSpec,
    private readonly transport: TransportSpec,
  ) {
    this.native = nativeAvailable && !spec.tls;
    const servername = transport.serverName !== '' ? transport.serverName : net.isIP(spec.host) === 0 ? spec.host : undefined;
    this.options = {
      pipelining: 1,
      keepAliveTimeout: transport.idleConnTimeoutMs,
      keepAliveMaxTimeout: transport.idleConnTimeoutMs,
      headersTimeout: transport.responseHeaderTimeoutMs,
      // A response body may pause for as long as it likes (server-sent events, long downloads to slow
      // readers): Sluice never times out a body the backend is still sending.
      bodyTimeout: 0,
      maxHeaderSize: MAX_RESPONSE_HEAD,
      connect: spec.tls
        ? {
            timeout: transport.dialTimeoutMs,
            rejectUnauthorized: !transport.insecureSkipVerify,
            ...(transport.rootCAs !== '' ? { ca: transport.rootCAs } : {}),
            ...(servername !== undefined ? { servername } : {}),
            ALPNProtocols: ['http/1.1'],
          }
        : { timeout: transport.dialTimeoutMs },
    };
  }

  /** Requests keep their connection for another request only when idle ones may be kept at all. */
  get keepAlive(): boolean {
    return this.transport.maxIdleConnsPerHost > 0;
  }

  /**
   * A connection to `host` (the slot's address now): the newest idle one, or a new one. `reused` tells the
   * caller whether it served a request before (a stale keep-alive connection may then fail at once).
   * `streamed`: the request body will be streamed from the client (undici carries those).
   */
  acquire(host: string, streamed: boolean): { client: PooledClient; reused: boolean } {
    if (host !== this.host) {
      this.dropIdle();
      this.host = host;
    }
    if (this.native && !streamed) {
      for (let client = this.idleNative.pop(); client !== undefined; client = this.idleNative.pop()) {
        if (!client.closed) return { client, reused: true };
        this.all.delete(client);
      }
    }
    // A host name is connected to natively once an address for it is known (the first requests go through
    // undici while the lookup runs).
    const address = !this.native || streamed ? '' : net.isIP(host) !== 0 ? host : resolvedAddress(host);
    if (address !== '') {
      const t = this.transport;
      const client = new NativeHttpConnection(address, this.spec.port, sourceAddressFor(t, address), t.dialTimeoutMs, t.responseHeaderTimeoutMs, t.idleConnTimeoutMs, this.forgetFn);
      this.all.add(client);
      return { client, reused: false };
    }
    for (let client = this.idle.pop(); client !== undefined; client = this.idle.pop()) {
      if (!client.closed && !client.destroyed) return { client, reused: true };
      this.all.delete(client);
    }
    const localAddress = sourceAddressFor(this.transport, host);
    const options = localAddress === '' ? this.options : { ...this.options, localAddress };
    const client = new Client(`${this.spec.tls ? 'https' : 'http'}://${bracketHost(host)}:${this.spec.port}`, options);
    client.on('disconnect', () => this.forget(client));
    client.on('connectionError', () => undefined);
    this.all.add(client);
    return { client, reused: false };
  }

  /** The request on `client` is over: keep it idle when it may be reused, else close it. */
  release(client: PooledClient, reusable: boolean): void {
    if (reusable && !this.closed && this.idle.length + this.idleNative.length < this.transport.maxIdleConnsPerHost && !client.closed && !client.destroyed) {
      if (client instanceof NativeHttpConnection) this.idleNative.push(client);
      else this.idle.push(client);
      return;
    }
    this.all.delete(client);
    closeClient(client);
  }

  /** The request on `client` failed: its connection is not trusted again. */
  discard(client: PooledClient): void {
    this.all.delete(client);
    this.unidle(client);
    destroyClient(client);
  }

  /** The generation is done (no request of it is in flight): close every connection. */
  close(): void {
    this.closed = true;
    for (const client of this.all) destroyClient(client);
    this.all.clear();
    this.idle.length = 0;
    this.idleNative.length = 0;
  }

  /** An idle connection that the backend (or its idle timeout) closed is not kept as idle. */
  private forget(client: PooledClient): void {
    if (!this.unidle(client)) return;
    this.all.delete(client);
    destroyClient(client);
  }

  /** Take `client` off its idle stack; false when it was not idle. */
  private unidle(client: PooledClient): boolean {
    const stack: PooledClient[] = client instanceof NativeHttpConnection ? this.idleNative : this.idle;
    const at = stack.indexOf(client);
    if (at < 0) return false;
    stack.splice(at, 1);
    return true;
  }

  private dropIdle(): void {
    for (const client of [...this.idle, ...this.idleNative]) {
      this.all.delete(client);
      closeClient(client);
    }
    this.idle.length = 0;
    this.idleNative.length = 0;
  }
}
