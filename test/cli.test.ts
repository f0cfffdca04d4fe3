/**
 * The `sluice` command line as a user meets it: the real bin in a child process, its exit codes
 * (0 ok, 2 usage or config error, 1 runtime failure) and the exact text of its usage errors.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { accepts, runSluiceCommand, tempFiles } from './helpers/cli.js';
import { freePort, REPO, SLUICE_BIN, simpleConfig, startSluice, type SluiceProcess } from './helpers/sluice.js';

const VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

const GOOD = simpleConfig(['ws://127.0.0.1:9001', 'ws://127.0.0.1:9002']).replace('{PORT}', '8080');
/** Valid apart from one server URL and one out-of-range number: two problems, in document order. */
const BAD = simpleConfig(['ws//127.0.0.1:9001'], 'loadBalancer:\n  retries: -1\n');
const badProblems = (file: string): string =>
  `${file}: http.services.pool.loadBalancer.servers[0].url: invalid URL 'ws//127.0.0.1:9001': missing "://" (expected a URL like "ws://10.0.0.1:9000" or "https://api.internal")\n` +
  `${file}: loadBalancer.retries: -1 is out of range (expected an integer from 0 to 100)\n`;

/** First line of stderr: the message itself, before the usage text that follows it. */
const firstLine = (text: string): string => text.split('\n')[0]!;

describe('sluice usage', () => {
  for (const flag of ['--help', '-h', 'help']) {
    test(`${flag} prints usage on stdout and exits 0`, async () => {
      const result = await runSluiceCommand([flag]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^usage:\n/);
      for (const form of [
        'sluice run FILE [--workers N]',
        'sluice run --config FILE [--workers N]',
        'sluice --configFile=FILE [--workers N]',
        'sluice validate FILE ',
        'sluice validate --config FILE ',
      ]) {
        assert.ok(result.stdout.includes(form), `usage shows '${form}'`);
      }
      assert.equal(result.stderr, '');
    });
  }

  test('--version prints the package version', async () => {
    const result = await runSluiceCommand(['--version']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `sluice ${VERSION}\n`);
  });

  test('no command prints usage and exits 2', async () => {
    const result = await runSluiceCommand([]);
    assert.equal(result.code, 2);
    assert.match(result.stdout, /^usage:\n/);
  });

  const usageErrors: [args: string[], message: string][] = [
    [['frobnicate'], "sluice: unknown command 'frobnicate' (expected run or validate)"],
    [['--frob'], "sluice: unknown command '--frob' (expected run or validate)"],
    [['run', '--frob'], "sluice: run: unknown option '--frob' (expected FILE, --config FILE, --workers N or --takeover)"],
    [['run', '--config', 'x.yaml', 'extra.yaml'], "sluice: run takes one config file, got 'x.yaml' and 'extra.yaml'"],
    [['run', 'a.yaml', '--configFile=b.yaml'], "sluice: run takes one config file, got 'a.yaml' and 'b.yaml'"],
    [['run'], 'sluice: run needs a config FILE (sluice run FILE)'],
    [['run', '--workers', '2'], 'sluice: run needs a config FILE (sluice run FILE)'],
    [['run', '--config'], 'sluice: --config needs a FILE'],
    [['--configFile='], 'sluice: --configFile needs a FILE'],
    [['run', '--config', 'x.yaml', '--workers', '0'], "sluice: --workers: invalid value '0' (expected an integer from 1 to 1024, as the workers key)"],
    [['run', '--config', 'x.yaml', '--workers', 'abc'], "sluice: --workers: invalid value 'abc' (expected an integer from 1 to 1024, as the workers key)"],
    [['run', '--config', 'x.yaml', '--workers', '-1'], "sluice: --workers: invalid value '-1' (expected an integer from 1 to 1024, as the workers key)"],
    [['run', '--config', 'x.yaml', '--workers=1.5'], "sluice: --workers: invalid value '1.5' (expected an integer from 1 to 1024, as the workers key)"],
    [['run', '--config', 'x.yaml', '--workers'], "sluice: --workers: invalid value '' (expected an integer from 1 to 1024, as the workers key)"],
    [['validate'], 'sluice: validate needs a config FILE (sluice validate FILE)'],
    [['validate', 'a.yaml', 'b.yaml'], "sluice: validate takes one config file, got 'a.yaml' and 'b.yaml'"],
    [['validate', 'a.yaml', '--workers', '2'], "sluice: validate: unknown option '--workers' (expected FILE or --config FILE)"],
  ];
  for (const [args, message] of usageErrors) {
    test(`sluice ${args.join(' ')} → exit 2: ${message}`, async () => {
      const result = await runSluiceCommand(args);
      assert.equal(result.code, 2, result.stderr);
      assert.equal(firstLine(result.stderr), message);
      assert.match(result.stderr, /\nusage:\n/, 'usage follows the message');
      assert.equal(result.stdout, '');
    });
  }
});

describe('sluice validate', () => {
  let files: ReturnType<typeof tempFiles>;
  before(() => {
    files = tempFiles({ 'good.yaml': GOOD, 'bad.yaml': BAD.replace('{PORT}', '8080'), 'notes.txt': GOOD });
  });
  after(() => files.remove());

  test('a good file: one summary line on stdout, exit 0', async () => {
    const file = files.file('good.yaml');
    const result = await runSluiceCommand(['validate', file]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${file}: ok (1 entry point, 1 router, 1 service, 2 backends)\n`);
    assert.equal(result.stderr, '');
  });

  test('a bad file: every problem on stderr, one per line, exit 2', async () => {
    const file = files.file('bad.yaml');
    const result = await runSluiceCommand(['validate', file]);
    assert.equal(result.code, 2);
    assert.equal(result.stderr, badProblems(file));
    assert.equal(result.stdout, '');
  });

  test('Traefik v2 rule syntax: warnings on stderr, summary on stdout, exit 0', async () => {
    const v2 = files.file('v2.yaml');
    writeFileSync(v2, GOOD.replace('PathPrefix(`/`)', 'Headers(`X-Room`, `blue`) || Host(`a.test`, `b.test`)'));
    const result = await runSluiceCommand(['validate', v2]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${v2}: ok with 2 warnings (1 entry point, 1 router, 1 service, 2 backends)\n`);
    assert.equal(
      result.stderr,
      `${v2}: http.routers.all.rule: warning: Traefik v2 syntax 'Headers(\`X-Room\`, \`blue\`)' at column 1 (Traefik v3 form: Header(\`X-Room\`, \`blue\`))\n` +
        `${v2}: http.routers.all.rule: warning: Traefik v2 syntax 'Host(\`a.test\`, \`b.test\`)' at column 30 (Traefik v3 form: (Host(\`a.test\`) || Host(\`b.test\`)))\n`,
    );
  });

  test('errors and warnings together: the errors, then the warnings, exit 2', async () => {
    const mixed = files.file('mixed.yaml');
    writeFileSync(mixed, GOOD.replace('PathPrefix(`/`)', 'Headers(`X-Room`, `blue`) && HostSNI(`a.test`)'));
    const result = await runSluiceCommand(['validate', mixed]);
    assert.equal(result.code, 2);
    const lines = result.stderr.split('\n');
    assert.match(lines[0]!, /^.*mixed\.yaml: http\.routers\.all\.rule: invalid rule .*HostSNI is a TCP router matcher at column 30/);
    assert.match(lines[1]!, /^.*mixed\.yaml: http\.routers\.all\.rule: warning: Traefik v2 syntax 'Headers/);
    assert.equal(lines.length, 3);
    assert.equal(result.stdout, '');
  });

  test('a missing file: exit 2', async () => {
    const file = files.file('missing.yaml');
    const result = await runSluiceCommand(['validate', file]);
    assert.equal(result.code, 2);
    assert.equal(result.stderr, `${file}: cannot read config file: no such file\n`);
  });

  test('a file that is neither YAML nor TOML: exit 2', async () => {
    const file = files.file('notes.txt');
    const result = await runSluiceCommand(['validate', file]);
    assert.equal(result.code, 2);
    assert.equal(result.stderr, `${file}: unknown file type '.txt' (expected a .yaml, .yml or .toml file)\n`);
  });
});

describe('every way to name the config file', () => {
  let files: ReturnType<typeof tempFiles>;
  before(() => {
    files = tempFiles({ 'good.yaml': GOOD, 'bad.yaml': BAD.replace('{PORT}', '8080') });
  });
  after(() => files.remove());

  const spellings = (file: string): string[][] => [
    [file],
    ['--config', file],
    ['-c', file],
    [`--config=${file}`],
    [`--configFile=${file}`],
    ['--configFile', file],
    [`--configfile=${file}`],
  ];

  test('sluice validate: FILE, --config FILE, -c FILE, --config=FILE and Traefik\'s --configFile', async () => {
    const file = files.file('good.yaml');
    for (const spelling of spellings(file)) {
      const result = await runSluiceCommand(['validate', ...spelling]);
      assert.equal(result.code, 0, `validate ${spelling.join(' ')}: ${result.stderr}`);
      assert.equal(result.stdout, `${file}: ok (1 entry point, 1 router, 1 service, 2 backends)\n`);
    }
  });

  // A bad config stops `run` after loading, before any port or worker: quick, and it shows which file was read.
  test('sluice run: the same spellings, and --configFile without run, as traefik --configFile=FILE', async () => {
    const file = files.file('bad.yaml');
    const forms = [...spellings(file).map((spelling) => ['run', ...spelling]), [`--configFile=${file}`], ['--configFile', file], ['--config', file, '--workers', '2']];
    for (const args of forms) {
      const result = await runSluiceCommand(args);
      assert.equal(result.code, 2, `sluice ${args.join(' ')}: ${result.stderr}`);
      assert.equal(result.stderr, badProblems(file), `sluice ${args.join(' ')}`);
    }
  });
});

describe('sluice run', () => {
  let files: ReturnType<typeof tempFiles> | undefined;
  let sluice: SluiceProcess | undefined;
  after(async () => {
    await sluice?.stop();
    files?.remove();
  });

  test('a bad config: every problem, exit 2, and the entry point\'s port never opens', async () => {
    const port = await freePort();
    files = tempFiles({ 'sluice.yaml': BAD.replace('{PORT}', String(port)) });
    const file = files.file('sluice.yaml');
    let opened = false;
    const result = await runSluiceCommand(['run', '--config', file, '--workers', '2'], {
      // Probe the port for as long as the process lives: it must never accept.
      whileRunning: async (isRunning) => {
        while (isRunning()) {
          if (await accepts(port)) opened = true;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      },
    });
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stderr, badProblems(file));
    assert.equal(opened, false, 'the port accepted a connection');
    assert.equal(await accepts(port), false);
  });

  test('a missing config file: exit 2 without starting', async () => {
    const result = await runSluiceCommand(['run', '--config', '/nonexistent/sluice.yaml']);
    assert.equal(result.code, 2);
    assert.equal(result.stderr, '/nonexistent/sluice.yaml: cannot read config file: no such file\n');
  });

  for (const [label, args] of [
    ['sluice run FILE --workers 2', (file: string) => ['run', file, '--workers', '2']],
    ['sluice --configFile=FILE --workers=2', (file: string) => [`--configFile=${file}`, '--workers=2']],
  ] as const) {
    test(`${label} serves, and SIGTERM stops it with 0`, async () => {
      const started = await startSluice(simpleConfig(['ws://127.0.0.1:9']), { args });
      assert.match(started.stderr(), /sluice listening: web on ws:\/\/127\.0\.0\.1:\d+; 2 workers;/);
      assert.ok(await accepts(started.port));
      assert.equal(await started.stop(), 0);
    });
  }

  test('each config warning is logged once at warn, with file and key path', async () => {
    const started = await startSluice(simpleConfig(['ws://127.0.0.1:9']).replace('PathPrefix(`/`)', 'PathPrefix(`/a`, `/b`)'));
    assert.equal(await started.stop(), 0);
    const warnings = started
      .stderr()
      .split('\n')
      .filter((line) => line.includes('Traefik v2 syntax'))
      .map((line) => JSON.parse(line) as { level: string; file: string; path: string; msg: string });
    assert.equal(warnings.length, 1, started.stderr());
    assert.equal(warnings[0]!.level, 'warn');
    assert.equal(warnings[0]!.file, started.configFile);
    assert.equal(warnings[0]!.path, 'http.routers.all.rule');
    assert.equal(
      warnings[0]!.msg,
      `${started.configFile}: http.routers.all.rule: Traefik v2 syntax 'PathPrefix(\`/a\`, \`/b\`)' at column 1 (Traefik v3 form: PathPrefix(\`/a\`) || PathPrefix(\`/b\`))`,
    );
  });

  test('--workers wins over the config file', async () => {
    sluice = await startSluice(`${simpleConfig(['ws://127.0.0.1:9'])}workers: 1\n`, { workers: 3 });
    assert.match(sluice.stderr(), /; 3 workers;/);
    assert.equal(await sluice.stop(), 0);
  });
});

describe('a Node.js that uWebSockets.js has no binary for', () => {
  // The package is ESM ("type": "module"), so the preload is a .js module.
  const fakeNode22 = path.join(REPO, 'test/fixtures/runtime/node-22-abi.js');
  const sluiceOnNode22 = (args: string[]): ReturnType<typeof spawnSync> =>
    spawnSync(process.execPath, ['--import', pathToFileURL(fakeNode22).href, SLUICE_BIN, ...args], { encoding: 'utf8', timeout: 10_000 });
  let files: ReturnType<typeof tempFiles>;
  before(() => {
    files = tempFiles({ 'good.yaml': GOOD });
  });
  after(() => files.remove());

  test('sluice run exits 1 with one line: the Node.js found, the ones that work, the README section', () => {
    const result = sluiceOnNode22(['run', files.file('good.yaml')]);
    assert.equal(result.status, 1);
    assert.equal(
      result.stderr,
      `sluice: Node.js v22.12.0 (ABI 127) cannot run Sluice: the installed uWebSockets.js has no ${process.platform}-${process.arch} ` +
        'binary for it, only for Node.js 20; see README.md, section "Node.js versions"\n',
    );
    assert.equal(result.stdout, '');
  });

  test('validate, --help and --version need no uWebSockets.js and still work', () => {
    assert.equal(sluiceOnNode22(['validate', files.file('good.yaml')]).status, 0);
    assert.equal(sluiceOnNode22(['--help']).status, 0);
    assert.equal(sluiceOnNode22(['--version']).stdout, `sluice ${VERSION}\n`);
  });
});
