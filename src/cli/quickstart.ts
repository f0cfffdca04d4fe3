/**
 * `npm start`: the quick start. Starts the three demo echo backends that config/sluice.yaml routes
 * to (a child process, so Sluice proxies to a separate process as it would in production), then
 * runs Sluice with that config in this process. Ctrl-C stops both.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { run } from '../primary/run.js';
import { uwsRuntimeProblem } from './runtime.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const echoScript = path.join(repo, 'dist/loadtest/echo-backend.js');
const configFile = path.join(repo, 'config/sluice.yaml');

// The demo backends and Sluice's workers both load uWebSockets.js: say it once, plainly, if they cannot.
const runtimeProblem = uwsRuntimeProblem();
if (runtimeProblem !== null) {
  process.stderr.write(`sluice: ${runtimeProblem}\n`);
  process.exit(1);
}

const backends = spawn(process.execPath, [echoScript, '--ports', '9001,9002,9003'], { stdio: ['ignore', 'pipe', 'inherit'] });
backends.stdout.setEncoding('utf8');
const ready = new Promise<void>((resolve, reject) => {
  backends.stdout.once('data', (line: string) => {
    process.stderr.write(`demo ${line}`);
    resolve();
  });
  backends.once('exit', (code) => reject(new Error(`demo echo backends exited with code ${code} (are ports 9001-9003 free?)`)));
});
// Signals reach the whole foreground group; the backends stop on their own SIGINT/SIGTERM.
process.on('exit', () => backends.kill('SIGTERM'));

ready
  .then(() => {
    process.stderr.write('try it:  node -e "const ws=new (require(\'ws\'))(\'ws://localhost:8080/\');ws.on(\'open\',()=>ws.send(\'hello\'));ws.on(\'message\',m=>{console.log(String(m));ws.close()})"\n');
    return run({ configFile });
  })
  .then(
    (code) => {
      process.exitCode = code;
      backends.kill('SIGTERM');
    },
    (error: Error) => {
      process.stderr.write(`sluice: ${error.message}\n`);
      process.exitCode = 1;
      backends.kill('SIGTERM');
    },
  );
