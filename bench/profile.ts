/**
 * One bounded load against one proxy, for profiling rather than comparing: three C echo backends
 * (native/build/Release/ws-echo), Sluice (one worker) or HAProxy (one thread) in front, the load generator's
 * native client (churn: the Node client, which the native one does not run). Prints the proxy's CPU per
 * round trip (or per upgrade) over the measured window, and can wrap that window in `perf record`, count the
 * proxy's syscalls with `perf stat`, or start Sluice with node flags (--cpu-prof, --trace-gc, …).
 *
 *   node dist/bench/profile.js [--target sluice|haproxy] [--scenario throughput|echo|churn] [--seconds 4]
 *        [--size 64] [--pin] [--perf-record FILE] [--perf-syscalls FILE] [--] [node flags for Sluice...]
 *
 * --pin puts the proxy on CPU 0 and the load on CPU 1 (taskset), as the bench does.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT, freePort, haproxyConfig, pinned, startCEchoBackends, stopProcess, waitForPort } from './targets.js';
import { parseOptions } from '../loadtest/options.js';
import { runLoad } from '../loadtest/run.js';
import { cpuMicros, processTree } from './procstat.js';

const { values, positionals } = parseArgs({
  options: {
    target: { type: 'string', default: 'sluice' },
    scenario: { type: 'string', default: 'throughput' },
    seconds: { type: 'string', default: '4' },
    size: { type: 'string', default: '64' },
    pin: { type: 'boolean', default: false },
    'perf-record': { type: 'string' },
    'perf-syscalls': { type: 'string' },
  },
  allowPositionals: true,
});

const pin = values.pin ? { proxyCpu: '0', loadCpu: '1' } : { proxyCpu: null, loadCpu: null };
if (values.pin) execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });
const echo = await startCEchoBackends(pin);
if (echo === null) throw new Error('ws-echo is not built: npm run build:native');
const port = await freePort();
const dir = mkdtempSync(join(tmpdir(), 'sluice-profile-'));
let proxy: ChildProcess;
if (values.target === 'haproxy') {
  writeFileSync(join(dir, 'haproxy.cfg'), haproxyConfig(port, echo.ports));
  const [cmd, args] = pinned(pin.proxyCpu, 'haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]);
  proxy = spawn(cmd, args, { stdio: 'ignore' });
} else {
  writeFileSync(
    join(dir, 'sluice.yaml'),
    `admin: { address: "127.0.0.1:${await freePort()}" }
entryPoints:
  web: { address: "127.0.0.1:${port}" }
http:
  routers:
    echo: { rule: "PathPrefix(\`/\`)", service: echo }
  services:
    echo:
      loadBalancer:
        servers: [ ${echo.ports.map((p) => `{ url: "ws://127.0.0.1:${p}" }`).join(', ')} ]
`,
  );
  const [cmd, args] = pinned(pin.proxyCpu, process.execPath, [...positionals, join(REPO_ROOT, 'bin/sluice.js'), 'run', '--config', join(dir, 'sluice.yaml'), '--workers', '1']);
  // Sluice points fd 1 at stderr once started (native/src/stdio.c): --trace-gc lines come on stderr.
  proxy = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], cwd: dir });
}
await waitForPort(port, 20_000, proxy);
await new Promise((resolve) => setTimeout(resolve, 500));

const url = `ws://127.0.0.1:${port}/`;
const scenario =
  values.scenario === 'echo'
    ? ['echo', '--client', 'native', '--connections', '2000', '--interval', '100', '--size', values.size, '--rate', '4000']
    : values.scenario === 'churn'
      ? ['churn', '--concurrency', '50']
      : ['throughput', '--client', 'native', '--connections', '100', '--in-flight', '16', '--size', values.size];
let pids: number[] = [];
let cpu = 0;
let perf: ChildProcess | null = null;
const report = await runLoad(parseOptions([...scenario, '--url', url, '--threads', '1', '--duration', values.seconds, '--warmup', '1', '--no-progress'])!, {
  onPhase(phase) {
    if (phase === 'measure') {
      pids = processTree(proxy.pid!);
      cpu = cpuMicros(pids);
      if (values['perf-record'] !== undefined) {
        perf = spawn('perf', ['record', '-e', 'cpu-clock', '-F', '2999', '-g', '-p', String(proxy.pid), '-o', values['perf-record']], { stdio: 'ignore' });
      } else if (values['perf-syscalls'] !== undefined) {
        const events = ['write', 'sendto', 'read', 'recvfrom', 'epoll_wait', 'epoll_pwait', 'epoll_ctl', 'writev', 'getrandom'].map((s) => `syscalls:sys_enter_${s}`);
        perf = spawn('perf', ['stat', '-e', events.join(','), '-p', String(proxy.pid), '-o', values['perf-syscalls']], { stdio: 'ignore' });
      }
    } else if (phase === 'stop') {
      cpu = cpuMicros(pids) - cpu;
      perf?.kill('SIGINT');
    }
  },
});
const units = values.scenario === 'churn' ? report.upgrades : report.received;
console.log(
  JSON.stringify({
    target: values.target,
    scenario: values.scenario,
    size: Number(values.size),
    perSecond: Math.round(values.scenario === 'churn' ? report.upgradesPerSecond : report.messagesPerSecond),
    proxyCpuUsPerUnit: Number((cpu / units).toFixed(3)),
    latencyUs: values.scenario === 'echo' ? { p50: report.latencyUs.p50, p99: report.latencyUs.p99, p999: report.latencyUs.p999 } : undefined,
    lost: report.lost,
    generatorCpu: report.cpu.percentOfOneCore,
  }),
);
if (perf !== null) await new Promise((resolve) => (perf as ChildProcess).once('exit', resolve));
await stopProcess(proxy);
await echo.stop();
rmSync(dir, { recursive: true, force: true });
