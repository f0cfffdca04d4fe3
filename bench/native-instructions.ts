/**
 * Instructions per message through the native leg's JavaScript face, counted by valgrind's callgrind (a
 * deterministic count, usable on a busy machine where CPU time is not): one addon connection to a C echo
 * server (native/build/Release/ws-echo), 64 binary 64-byte messages sent per event-loop turn and every echo
 * taken through onFrames, for two numbers of turns; the difference divided by the extra messages leaves
 * startup out. `node --jitless` keeps the count stable run to run (JIT compilation is not deterministic).
 *
 *   node dist/bench/native-instructions.js            # runs valgrind twice (100 and 400 turns), ~1 minute
 *   node dist/bench/native-instructions.js --client PORT TURNS   # one run, what valgrind runs
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { NativeUpstream } from '../native/index.js';

const require = createRequire(import.meta.url);
const ADDON = fileURLToPath(new URL('../../native/build/Release/sluice_upstream.node', import.meta.url));
const WS_ECHO = fileURLToPath(new URL('../../native/build/Release/ws-echo', import.meta.url));
const PER_TURN = 64;

function client(port: number, turns: number): void {
  const native = require(ADDON) as NativeUpstream;
  const total = PER_TURN * turns;
  const payload = new ArrayBuffer(64);
  let echoed = 0;
  let sent = 0;
  let head = '';
  let id = 0;
  const turn = (): void => {
    for (let i = 0; i < PER_TURN; i++) native.sendMessage(id, 2, payload);
    if (++sent < turns) setImmediate(turn);
  };
  const views = native.init({
    onOpen(_id, status) {
      if (status !== 0) throw new Error(`connect failed: ${status}`);
    },
    onRaw(_id, length) {
      head += Buffer.from(views.readBuffer.buffer, 0, length).toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      native.startFraming(id, 1 << 20);
      turn();
    },
    onFrames(_id, count) {
      // What native-leg.ts does per frame: a view on the read buffer.
      for (let i = 0; i < count * 3; i += 3) {
        const start = views.frames[i + 1]!;
        views.readBuffer.subarray(start, start + views.frames[i + 2]!);
      }
      echoed += count;
      if (echoed >= total) native.destroy(id);
    },
    onClose() {},
  });
  id = native.connect('127.0.0.1', port, 2000);
  native.writeRaw(id, 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  process.on('exit', () => {
    if (echoed < total) process.stderr.write(`only ${echoed} of ${total} echoed\n`);
  });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--client') {
    client(Number(args[1]), Number(args[2]));
    return;
  }
  if (!existsSync(ADDON) || !existsSync(WS_ECHO)) throw new Error('build the addon first: npm run build:native');
  if (spawnSync('valgrind', ['--version']).status !== 0) throw new Error('valgrind is not installed (apt-get install valgrind)');
  const echo = spawn(WS_ECHO, ['0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => echo.stdout.once('data', (d: Buffer) => resolve(Number(/\d+/.exec(d.toString())![0]))));
  try {
    const counts: number[] = [];
    for (const turns of [100, 400]) {
      const run = spawnSync(
        'valgrind',
        ['--tool=callgrind', '--smc-check=all', '--callgrind-out-file=/dev/null', process.execPath, '--jitless', fileURLToPath(import.meta.url), '--client', String(port), String(turns)],
        { encoding: 'utf8', timeout: 600_000 },
      );
      const collected = /Collected : (\d+)/.exec(run.stderr)?.[1];
      if (collected === undefined) throw new Error(`valgrind failed: ${run.stderr.slice(-500)}`);
      counts.push(Number(collected));
      console.log(`${turns} turns: ${collected} instructions`);
    }
    console.log(`per message (sent and echoed): ${Math.round((counts[1]! - counts[0]!) / (300 * PER_TURN))} instructions`);
  } finally {
    echo.kill();
  }
}

await main();
