/**
 * The container image without a container engine: the Dockerfile's final stage is read (its COPY
 * layout, WORKDIR, ENV, USER, ENTRYPOINT, CMD and HEALTHCHECK), its files are laid out under a temporary
 * root from this checkout's build, and its entry point runs as the image would run it: tini as the first
 * process, then `node bin/sluice.js run --config /etc/sluice/sluice.yaml`, with the image's absolute paths
 * under the temporary root. The config at that path is the test's own, as a user mounts theirs. It must
 * start, answer /ready, carry a WebSocket, pass the HEALTHCHECK command, and drain on SIGTERM sent to tini.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { closed, connect, roundTrip } from './helpers/clients.js';
import { REPO, freePort, simpleConfig, startBackend, type TestBackend } from './helpers/sluice.js';

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

interface Stage {
  readonly from: string;
  readonly name: string;
  readonly instructions: Instruction[];
}

/** The Dockerfile as stages of instructions (comments dropped, continuation lines joined). */
function readDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const logical = text.replace(/\\\n/g, ' ').split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'));
  for (const line of logical) {
    const [, keyword, args] = /^(\S+)\s*(.*)$/.exec(line)!;
    const upper = keyword!.toUpperCase();
    if (upper === 'FROM') {
      const [image, , name] = args!.split(/\s+/);
      stages.push({ from: image!, name: name ?? '', instructions: [] });
    } else {
      assert.ok(stages.length > 0, `${upper} before FROM`);
      stages.at(-1)!.instructions.push({ keyword: upper, args: args! });
    }
  }
  return stages;
}

function jsonForm(instruction: Instruction | undefined, what: string): string[] {
  assert.ok(instruction, `no ${what}`);
  const list: unknown = JSON.parse(instruction.args);
  assert.ok(Array.isArray(list) && list.every((a) => typeof a === 'string'), `${what} must be in JSON (exec) form, so no shell stands between the runtime and the process`);
  return list as string[];
}

function last(stage: Stage, keyword: string): Instruction | undefined {
  return stage.instructions.filter((i) => i.keyword === keyword).at(-1);
}

interface Image {
  readonly root: string;
  readonly workdir: string;
  readonly env: Record<string, string>;
  readonly user: string;
  readonly command: string[];
  readonly healthcheck: string[];
}

/**
 * Lays the final stage's files out under a temp root: `COPY --from=<stage>` takes the build stage's files
 * from this checkout (whose build made them: npm ci, tsc, node-gyp), a plain COPY takes them from the
 * checkout as the build context. node_modules is linked, not copied.
 */
function layOut(stages: readonly Stage[]): Image {
  const final = stages.at(-1)!;
  const root = mkdtempSync(path.join(tmpdir(), 'sluice-image-'));
  let workdir = '/';
  const env: Record<string, string> = {};
  let user = 'root';
  for (const { keyword, args } of final.instructions) {
    if (keyword === 'WORKDIR') workdir = path.posix.resolve(workdir, args);
    else if (keyword === 'ENV') for (const [, k, v] of args.matchAll(/(\w+)=(\S+)/g)) env[k!] = v!;
    else if (keyword === 'USER') user = args;
    else if (keyword === 'COPY') {
      const words = args.split(/\s+/);
      const from = words[0]!.startsWith('--from=') ? words.shift()!.slice('--from='.length) : null;
      const dest = words.pop()!;
      for (const source of words) {
        const local = from === null ? path.join(REPO, source) : fromStage(stages, from, source);
        assert.ok(existsSync(local), `COPY ${source}: ${local} does not exist here (npm ci builds it)`);
        const destIsDir = dest.endsWith('/') || dest === '.' || words.length > 1;
        const target = path.posix.resolve(workdir, dest, destIsDir ? path.posix.basename(source) : '');
        mkdirSync(path.dirname(path.join(root, target)), { recursive: true });
        if (path.basename(local) === 'node_modules') symlinkSync(local, path.join(root, target), 'dir');
        else cpSync(local, path.join(root, target), { recursive: true });
      }
    }
  }
  const command = [...jsonForm(last(final, 'ENTRYPOINT'), 'ENTRYPOINT'), ...jsonForm(last(final, 'CMD'), 'CMD')];
  const healthcheck = last(final, 'HEALTHCHECK');
  assert.ok(healthcheck, 'no HEALTHCHECK');
  const cmd = /\bCMD\s+(\[.*\])$/.exec(healthcheck.args);
  assert.ok(cmd, 'HEALTHCHECK must use CMD in JSON form');
  return { root, workdir, env, user, command, healthcheck: JSON.parse(cmd[1]!) as string[] };
}

/** A build stage's file as this checkout has it: the stage's WORKDIR is the checkout's root. */
function fromStage(stages: readonly Stage[], name: string, source: string): string {
  const stage = stages.find((s) => s.name === name);
  assert.ok(stage, `COPY --from=${name}: no such stage`);
  const workdir = last(stage, 'WORKDIR')?.args ?? '/';
  assert.ok(source.startsWith(`${workdir}/`), `COPY --from=${name} ${source}: outside the stage's WORKDIR ${workdir}`);
  return path.join(REPO, source.slice(workdir.length + 1));
}

/** The image's absolute paths that this root holds are rewritten under it; the rest (tini) are the host's. */
function underRoot(root: string, args: readonly string[]): string[] {
  return args.map((arg) => (arg.startsWith('/') && existsSync(path.join(root, arg)) ? path.join(root, arg) : arg));
}

describe('container image', () => {
  const stages = readDockerfile(readFileSync(path.join(REPO, 'Dockerfile'), 'utf8'));
  let image: Image;
  let backend: TestBackend;

  before(async () => {
    image = layOut(stages);
    backend = await startBackend();
  });
  after(async () => {
    await backend?.close();
    if (image !== undefined) rmSync(image.root, { recursive: true, force: true });
  });

  test('is built in a stage of its own (npm ci, the native addon compiled) and runs as a non-root user', () => {
    assert.ok(stages.length >= 2, 'not a multi-stage build');
    const build = stages.slice(0, -1).flatMap((s) => s.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args)).join('\n');
    for (const tool of ['python3', 'make', 'g++', 'npm ci', 'npm prune --omit=dev']) assert.ok(build.includes(tool), `the build stage does not run or install ${tool}`);
    assert.doesNotMatch(image.user, /^(root|0)(:|$)/);
    assert.match(image.user, /^\d+(:\d+)?$/, 'a numeric USER lets Kubernetes check runAsNonRoot');
  });

  test('has tini as PID 1, installed in the final stage', () => {
    assert.equal(image.command[0], '/usr/bin/tini');
    assert.equal(image.command[1], '--');
    const final = stages.at(-1)!.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args).join('\n');
    assert.match(final, /apt-get install .*\btini\b/);
    assert.ok(existsSync('/usr/bin/tini'), 'tini is not installed here: apt-get install tini (.ci/run does)');
  });

  test('its entry point starts Sluice with the image paths, serves, passes its HEALTHCHECK and drains on SIGTERM', async () => {
    const configPath = image.command.at(-1)!;
    assert.equal(image.command.at(-2), '--config');
    const configFile = path.join(image.root, configPath);
    assert.ok(statSync(configFile).isFile(), `the image has no ${configPath}`);

    // The image's own default config is valid; then the test mounts its own in its place, on free ports.
    const cwd = path.join(image.root, image.workdir);
    const validate = spawnSync(process.execPath, underRoot(image.root, ['bin/sluice.js', 'validate', configPath]), { cwd, encoding: 'utf8' });
    assert.equal(validate.status, 0, validate.stdout + validate.stderr);
    const port = await freePort();
    let adminPort = await freePort();
    while (adminPort === port) adminPort = await freePort();
    writeFileSync(configFile, `${simpleConfig([backend.url])}admin:\n  address: "127.0.0.1:${adminPort}"\nworkers: 1\nshutdown:\n  gracePeriod: 1s\n`.replaceAll('{PORT}', String(port)));

    const argv = underRoot(image.root, image.command);
    const child = spawn(argv[0]!, argv.slice(1), { cwd, env: { ...process.env, ...image.env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      assert.equal(await statusWithin(`http://127.0.0.1:${adminPort}/ready`, 200, 15_000, () => child.exitCode !== null), 200, `not ready:\n${stderr}`);
      const client = await connect(`ws://127.0.0.1:${port}/`);
      assert.equal(await roundTrip(client, 'through the image'), 'through the image');

      // The HEALTHCHECK command, run from the image's WORKDIR; its fixed admin port is this run's.
      const check = image.healthcheck.map((arg) => arg.replaceAll('127.0.0.1:9090', `127.0.0.1:${adminPort}`));
      const health = spawnSync(underRoot(image.root, check)[0]!, check.slice(1), { cwd, encoding: 'utf8', timeout: 10_000 });
      assert.equal(health.status, 0, `HEALTHCHECK failed: ${health.stderr}`);

      // SIGTERM goes to tini, which must pass it on: Sluice closes the client with 1001 and exits 0.
      const closing = closed(client);
      child.kill('SIGTERM');
      assert.equal((await closing).code, 1001);
      assert.equal(await exited, 0, stderr);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

/** Polls `url` until it answers `status` or `gaveUp()`; returns the last status (-1: no answer). */
async function statusWithin(url: string, status: number, timeoutMs: number, gaveUp: () => boolean): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  while (Date.now() < deadline && !gaveUp()) {
    last = await fetch(url).then((r) => r.status, () => -1);
    if (last === status) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return last;
}
