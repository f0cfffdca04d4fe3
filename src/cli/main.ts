/**
 * The `sluice` command line: `sluice run --config FILE [--workers N]`, `sluice validate FILE`.
 * Usage errors exit 2 with a line saying what was expected; config errors exit 2 with every problem.
 */
import { readFileSync } from 'node:fs';
import { run } from '../primary/run.js';
import { runValidate } from './validate.js';

const USAGE = `usage:
  sluice run --config FILE [--workers N] [--takeover]
                                           serve with the config in FILE (YAML or TOML)
  sluice validate FILE                     check FILE and print every problem
  sluice --version
options:
  --config FILE   the configuration file (Traefik file-provider shape, plus Sluice's own keys)
  --workers N     worker threads (1-1024); overrides the config's 'workers' (default: available cores)
  --takeover      replace the Sluice that listens on these ports: listen beside it, then make it stop
                  accepting and close its connections paced over its graceTimeOut (no connection refused)
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function usageError(message: string): number {
  process.stderr.write(`sluice: ${message}\n${USAGE}`);
  return 2;
}

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    case '--version':
    case 'version':
      process.stdout.write(`sluice ${version()}\n`);
      return 0;
    case 'validate': {
      if (rest.length !== 1) return usageError('validate takes exactly one FILE');
      return runValidate(rest[0]!, process.stdout, process.stderr);
    }
    case 'run': {
      let configFile: string | undefined;
      let workers: number | undefined;
      let takeover = false;
      for (let i = 0; i < rest.length; i++) {
        const arg = rest[i]!;
        const value = rest[i + 1];
        if (arg === '--config' || arg === '-c') {
          if (value === undefined) return usageError(`${arg} needs a FILE`);
          configFile = value;
          i++;
        } else if (arg === '--workers' || arg === '-w') {
          if (value === undefined || !/^[1-9]\d*$/.test(value) || Number(value) > 1024) return usageError(`${arg}: invalid value '${value ?? ''}' (expected an integer from 1 to 1024, as the workers key)`);
          workers = Number(value);
          i++;
        } else if (arg === '--takeover') {
          takeover = true;
        } else return usageError(`run: unknown option '${arg}' (expected --config, --workers or --takeover)`);
      }
      if (configFile === undefined) return usageError('run needs --config FILE');
      return run({ configFile, takeover, ...(workers === undefined ? {} : { workers }) });
    }
    default:
      return usageError(`unknown command '${command}' (expected run or validate)`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: Error) => {
    process.stderr.write(`sluice: ${error.stack ?? error.message}\n`);
    process.exitCode = 1;
  },
);
