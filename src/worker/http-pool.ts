/**
 * The keep-alive connections of one generation to one backend, for plain HTTP: a stack of undici Clients
 * (one connection each, no pipelining), Traefik's http.Transport semantics. Connections in use are not
 * capped (Socket.IO long-polls held for 25 s must never queue behind each other); idle ones are capped by
 * serversTransport.maxIdleConnsPerHost (default 200) and close after idleConnTimeout. The newest idle
 * connection is reused first, so a quiet period lets the oldest time out.
 *
 * Connecting follows the servers transport: dialTimeout, and for https:// backends rootCAs,
 * insecureSkipVerify and serverName (default: the backend URL's host name, none for an address).
 * A DNS discovery slot whose address changes gets fresh connections to the new address.
 */
import net from 'node:net';
import { Client } from 'undici';
import type { BackendSpec, TransportSpec } from '../config/snapshot.js';
import { bracketHost } from '../shared/address.js';

/** A backend's response head larger than this is refused (502, reason invalid_response). */
const MAX_RESPONSE_HEAD = 64 * 1024;

/** One keep-alive connection (an undici Client with pipelining 1). */
export type PooledClient = Client;

export class BackendPool {
  private readonly idle: PooledClient[] = [];
  private readonly all = new Set<PooledClient>();
  private host = '';
  private closed = false;
  private readonly options: Client.Options;

  constructor(
    private readonly spec: BackendSpec,
    private readonly transport: TransportSpec,
  ) {
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
   */
  acquire(host: string): { client: PooledClient; reused: boolean } {
    if (host !== this.host) {
      this.dropIdle();
      this.host = host;
    }
    for (let client = this.idle.pop(); client !== undefined; client = this.idle.pop()) {
      if (!client.closed && !client.destroyed) return { client, reused: true };
      this.all.delete(client);
    }
    const client = new Client(`${this.spec.tls ? 'https' : 'http'}://${bracketHost(host)}:${this.spec.port}`, this.options);
    client.on('disconnect', () => this.forget(client));
    client.on('connectionError', () => undefined);
    this.all.add(client);
    return { client, reused: false };
  }

  /** The request on `client` is over: keep it idle when it may be reused, else close it. */
  release(client: PooledClient, reusable: boolean): void {
    if (reusable && !this.closed && this.idle.length < this.transport.maxIdleConnsPerHost && !client.closed && !client.destroyed) {
      this.idle.push(client);
      return;
    }
    this.all.delete(client);
    client.close().catch(() => undefined);
  }

  /** The request on `client` failed: its connection is not trusted again. */
  discard(client: PooledClient): void {
    this.all.delete(client);
    const at = this.idle.indexOf(client);
    if (at >= 0) this.idle.splice(at, 1);
    client.destroy().catch(() => undefined);
  }

  /** The generation is done (no request of it is in flight): close every connection. */
  close(): void {
    this.closed = true;
    for (const client of this.all) client.destroy().catch(() => undefined);
    this.all.clear();
    this.idle.length = 0;
  }

  /** An idle connection that the backend (or its idle timeout) closed is not kept as idle. */
  private forget(client: PooledClient): void {
    const at = this.idle.indexOf(client);
    if (at < 0) return;
    this.idle.splice(at, 1);
    this.all.delete(client);
    client.destroy().catch(() => undefined);
  }

  private dropIdle(): void {
    for (const client of this.idle) {
      this.all.delete(client);
      client.close().catch(() => undefined);
    }
    this.idle.length = 0;
  }
}
