/**
 * Standard output carries only what the operator asked for: the access log, when accessLog has no
 * filePath. uWebSockets.js prints debug lines from C on file descriptor 1 in the worker threads
 * ("Browsed to SNI: chat.test" for each TLS name, at start and for every wildcard name a client brings),
 * where they would land in the middle of the JSON lines. So `sluice run`, before any worker starts, keeps a
 * private descriptor for what stdout was (the access log writes there) and points fd 1 at stderr, where
 * those lines join the other diagnostics.
 *
 * With the native addon this is dup + dup2 (native/src/stdio.c). Without it (not built, or SLUICE_NATIVE=0)
 * Linux can reopen both through /proc/self/fd: safe for terminals, pipes (Docker, Kubernetes, systemd with
 * StandardOutput=pipe) and files, not for sockets (journald), which cannot be reopened; there stdout stays
 * shared and the access log says so once.
 */
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import upstream from '#native';

interface StdioAddon {
  separateStdout(): number;
}

/** fd the access log writes to instead of stdout; 1 until separateStdout moved stdout. */
let operatorFd = 1;
/** Why stdout is still shared with C prints; null when separated, or when separation was never asked for. */
let sharedBecause: string | null = null;
let separated = false;

/** Once per process, before any worker thread starts. */
export function separateStdout(): void {
  if (separated) return;
  separated = true;
  const addon = upstream as unknown as Partial<StdioAddon> | null;
  let nativeProblem = 'the native addon is not built';
  if (typeof addon?.separateStdout === 'function') {
    try {
      operatorFd = addon.separateStdout();
      return;
    } catch (error) {
      nativeProblem = `the native addon could not: ${(error as Error).message}`;
    }
  } else if (process.env.SLUICE_NATIVE === '0') {
    nativeProblem = 'SLUICE_NATIVE=0 turned the native addon off';
  }
  try {
    operatorFd = reopenThroughProc();
  } catch (error) {
    sharedBecause = `${nativeProblem}, and ${(error as Error).message}`;
  }
}

/** The descriptor for "standard output" as the operator means it (what fd 1 was when Sluice started). */
export function operatorStdout(): number {
  return operatorFd;
}

/** Why the access log on stdout may meet uWebSockets.js's debug lines; null when it cannot. */
export function stdoutSharedBecause(): string | null {
  return sharedBecause;
}

/**
 * dup + dup2 without native code: a new open of /proc/self/fd/1 is the access log's descriptor, then fd 1 is
 * closed and the lowest free descriptor (1, since 0 is open) is opened on what fd 2 names. Everything here
 * is synchronous and runs before any thread that could open a descriptor in between.
 */
function reopenThroughProc(): number {
  if (process.platform !== 'linux') throw new Error(`${process.platform} has no /proc/self/fd to reopen stdout through`);
  const stdout = fstatSync(1);
  if (stdout.isSocket()) throw new Error('standard output is a socket, which cannot be reopened');
  fstatSync(0); // throws when stdin is closed: then the reopen below would land on fd 0, not 1
  // Appending to a regular-file stderr opened without O_APPEND would write over what fd 2 writes next.
  const stderr = fstatSync(2);
  const toStderr = stderr.isFIFO() || stderr.isCharacterDevice() || (stderr.isFile() && appends(2));
  const target = toStderr ? '/proc/self/fd/2' : '/dev/null';
  closeSync(openSync(target, 'a')); // fails here, while fd 1 is still in place, if it cannot be opened
  const saved = openSync('/proc/self/fd/1', 'a');
  closeSync(1);
  const fd = openSync(target, 'a');
  if (fd !== 1) {
    closeSync(fd);
    throw new Error(`reopening stdout gave descriptor ${fd}`);
  }
  return saved;
}

/** O_APPEND (02000 on Linux) in /proc/self/fdinfo's octal flags. */
function appends(fd: number): boolean {
  const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return flags !== null && (parseInt(flags[1]!, 8) & 0o2000) !== 0;
}
