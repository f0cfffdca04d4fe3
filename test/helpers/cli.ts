/**
 * Running the real `sluice` command to completion: exit code and everything it printed, with a time
 * limit after which the process is killed (so a hung command fails its test instead of the run).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SLUICE_BIN } from './sluice.js';

export interface CommandResult {
  /** Exit code, or null when killed by the time limit or a signal. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly timeoutMs?: number;
  /** Called once the process has started, while it runs (e.g. to probe a port). */
  readonly whileRunning?: (isRunning: () => boolean) => Promise<void>;
}

/** Run `sluice ...args` and wait for it to exit. */
export async function runSluiceCommand(args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  const child = spawn(process.execPath, [SLUICE_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let running = true;
  const exited = new Promise<CommandResult>((resolve) =>
    child.once('close', (code, signal) => {
      running = false;
      resolve({ code, signal, stdout, stderr });
    }),
  );
  const timeoutMs = options.timeoutMs ?? 10_000;
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    if (options.whileRunning !== undefined) await options.whileRunning(() => running);
    const result = await exited;
    if (result.signal === 'SIGKILL') throw new Error(`sluice ${args.join(' ')} did not exit within ${timeoutMs} ms:\n${result.stderr}`);
    return result;
  } finally {
    clearTimeout(timer);
    if (running) child.kill('SIGKILL');
  }
}

/** A temp directory holding `files` (name → text); `remove()` deletes it. */
export function tempFiles(files: Record<string, string>): { dir: string; file: (name: string) => string; remove: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-cli-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return { dir, file: (name) => path.join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Whether a TCP connection to host:port is accepted right now. */
export function accepts(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
