/**
 * How workers hand access-log records to the primary (src/worker/access-log.ts): a batch of records as a
 * structured-cloned array of arrays, against the same batch packed with msgpackr into one buffer that is
 * transferred (not copied). Measures CPU per record on the sending thread (the worker, whose time is what
 * matters) and on the receiving thread, for batches of the size a busy worker sends every 250 ms. Times
 * are wall time around the synchronous calls on each thread (process.cpuUsage() would count every thread).
 *
 *   npx tsc -p . && node dist/bench/access-log-transfer.js [--batch 1000] [--batches 300]
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { Packr, Unpackr } from 'msgpackr';

type Mode = 'clone' | 'msgpackr';
interface Setup {
  readonly mode: Mode;
  readonly batch: number;
  readonly batches: number;
}

function record(i: number): unknown[] {
  return [Date.now(), `10.0.${(i >> 8) & 255}.${i & 255}`, 0, 1, 2, i % 7, 1234 + i, 12, 840, 40, 96000, 1000, 0];
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function measure(setup: Setup): Promise<{ sendUs: number; receiveUs: number }> {
  const worker = new Worker(new URL(import.meta.url), { workerData: setup });
  const unpackr = new Unpackr({ useRecords: false });
  let received = 0;
  let receiveCpu = 0;
  const sendUs = await new Promise<number>((resolve, reject) => {
    worker.on('error', reject);
    worker.on('message', (message: { done?: number; records?: unknown[][] | Uint8Array }) => {
      if (message.done !== undefined) {
        resolve(message.done);
        return;
      }
      const start = performance.now();
      const records = setup.mode === 'clone' ? (message.records as unknown[][]) : (unpackr.unpack(message.records as Uint8Array) as unknown[][]);
      received += records.length;
      receiveCpu += (performance.now() - start) * 1000;
    });
  });
  await worker.terminate();
  // Receiving includes the structured-clone deserialization, which happens before the handler runs; the
  // handler's own time is what is timed here, so for 'clone' the figure is a lower bound.
  return { sendUs: sendUs / (setup.batch * setup.batches), receiveUs: receiveCpu / Math.max(1, received) };
}

if (!isMainThread) {
  const setup = workerData as Setup;
  const packr = new Packr({ useRecords: false });
  const port = parentPort!;
  let cpu = 0;
  for (let b = 0; b < setup.batches; b++) {
    const records: unknown[][] = [];
    for (let i = 0; i < setup.batch; i++) records.push(record(i));
    const start = performance.now();
    if (setup.mode === 'clone') port.postMessage({ records });
    else {
      const packed = Uint8Array.from(packr.pack(records));
      port.postMessage({ records: packed }, [packed.buffer as ArrayBuffer]);
    }
    cpu += (performance.now() - start) * 1000;
  }
  port.postMessage({ done: cpu });
} else {
  const batch = arg('--batch', 1000);
  const batches = arg('--batches', 300);
  const rows: string[] = [];
  for (const mode of ['clone', 'msgpackr', 'clone', 'msgpackr'] as const) {
    const t0 = performance.now();
    const { sendUs, receiveUs } = await measure({ mode, batch, batches });
    rows.push(`| ${mode} | ${sendUs.toFixed(3)} | ${receiveUs.toFixed(3)} | ${(performance.now() - t0).toFixed(0)} ms |`);
  }
  process.stdout.write(`batch ${batch} records × ${batches} batches (second pass of each is warm)\n\n| mode | sender µs/record | receiver handler µs/record | wall |\n|---|---|---|---|\n${rows.join('\n')}\n`);
}
