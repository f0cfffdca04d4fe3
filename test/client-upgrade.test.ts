/**
 * The client side of an upgrade (src/worker/client-upgrade.ts) against the use-after-free read in
 * uWebSockets.js 20.30 that closed a client right after its 101 ("1006 before the first echo"): no
 * JavaScript may run between res.upgrade()'s reallocation of the socket and HttpResponse::cork's
 * check after its callback, because V8 compiling that JavaScript allocates the freed bytes the check
 * reads. Whether the bug then fires depends on the heap and on ASLR (about one fresh 8-worker Sluice in
 * 17 before the fix), so the invariant itself is tested here, plus real upgrades through the same code.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type uWS from 'uWebSockets.js';
import { onClientOpen, upgradeClient } from '../src/worker/client-upgrade.js';
import type { TunnelRef } from '../src/worker/tunnel.js';
import { simpleConfig, startBackend, startSluice, type SluiceProcess, type TestBackend } from './helpers/sluice.js';
import { closeAllPeers, connect } from './helpers/peer.js';

const isNative = (fn: unknown): boolean => typeof fn === 'function' && Function.prototype.toString.call(fn).includes('[native code]');

/** A stand-in for uWS.HttpResponse that records what runs inside each cork and calls `open` the way
 *  uWS does, from inside upgrade(). */
function fakeResponse(): { res: uWS.HttpResponse; corked: unknown[]; writes: string[]; socket: object } {
  const corked: unknown[] = [];
  const writes: string[] = [];
  const socket = {};
  const res = {
    cork(callback: () => void) {
      corked.push(callback);
      callback();
      return res;
    },
    writeStatus(status: string) {
      writes.push(status);
      return res;
    },
    writeHeader(key: string, value: string) {
      writes.push(`${key}: ${value}`);
      return res;
    },
    upgrade(this: unknown) {
      assert.equal(this, res, 'upgrade is called on the response');
      writes.push('upgrade');
      onClientOpen(socket as uWS.WebSocket<TunnelRef>);
    },
  };
  return { res: res as unknown as uWS.HttpResponse, corked, writes, socket };
}

describe('upgrading the client once the backend said 101', () => {
  test('uWS runs no JavaScript of ours inside upgrade(): the open handler is a builtin', () => {
    assert.ok(isNative(onClientOpen), `onClientOpen must be a bound builtin, not ${Function.prototype.toString.call(onClientOpen)}`);
  });

  test('the cork around upgrade() holds no JavaScript, and the WebSocket is handed back after it', () => {
    const { res, corked, writes, socket } = fakeResponse();
    const ws = upgradeClient(res, { tunnel: {} } as TunnelRef, 'key', 'chat', {} as uWS.us_socket_context_t, '');
    assert.equal(ws, socket);
    assert.equal(corked.length, 1);
    assert.ok(isNative(corked[0]), 'the cork callback is res.upgrade itself, bound');
    assert.deepEqual(writes, ['upgrade']);
    assert.equal(upgradeClient(fakeResponse().res, { tunnel: {} } as TunnelRef, 'k', '', {} as uWS.us_socket_context_t, '') !== ws, true, 'nothing is left over from the previous upgrade');
  });

  // test/sticky.test.ts checks that the cookie reaches a real client with its 101.
  test('a Set-Cookie goes out in a cork of its own, before the one around upgrade()', () => {
    const { res, corked, writes, socket } = fakeResponse();
    assert.equal(upgradeClient(res, { tunnel: {} } as TunnelRef, 'key', '', {} as uWS.us_socket_context_t, 'sluice=1'), socket);
    assert.equal(corked.length, 2);
    assert.ok(!isNative(corked[0]) && isNative(corked[1]), 'only the second cork upgrades, and holds no JavaScript');
    assert.deepEqual(writes, ['101 Switching Protocols', 'set-cookie: sluice=1', 'upgrade']);
  });

  describe('through a real Sluice with eight fresh workers, on each leg', () => {
    for (const leg of ['0', '1']) {
      let backend: TestBackend | undefined;
      let sluice: SluiceProcess | undefined;
      before(async () => {
        backend = await startBackend();
        sluice = await startSluice(simpleConfig([backend.url]), { workers: 8, timeoutMs: 20_000, env: { ...process.env, SLUICE_NATIVE: leg } });
      });
      after(async () => {
        closeAllPeers();
        await sluice?.stop();
        await backend?.close();
      });

      test(`SLUICE_NATIVE=${leg}: every worker's first clients get their first echo`, async () => {
        const clients = await Promise.all(Array.from({ length: 64 }, (_, c) => connect(`${sluice!.url}/first/${c}`, { localAddress: `127.0.0.${1 + (c % 8)}` })));
        for (const [c, client] of clients.entries()) client.ws.send(`hello ${c}`);
        await Promise.all(clients.map(async (client, c) => assert.equal((await client.next(5000)).data.toString(), `hello ${c}`)));
      });
    }
  });
});
