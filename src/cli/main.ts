/**
 * The `sluice` command: `sluice run FILE`, `sluice validate FILE` and their spellings (see arguments.ts).
 * Usage errors exit 2 with a line saying what was expected; config errors exit 2 with every problem.
 * Before `run` starts a worker, C code's prints are moved off standard output (primary/stdout.ts); that
 * this Node.js can load uWebSockets.js at all was checked by bin/sluice.js (runtime.ts).
 */
import { readFileSync } from 'node:fs';
import { run } from '../primary/run.js';
import { separateStdout } from '../primary/stdout.js';
import { USAGE, UsageError, parseArguments, type Command } from './arguments.js';
import { runValidate } from './validate.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: readonly string[]): Promise<number> {
  let command: Command;
  try {
    command = parseArguments(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`sluice: ${error.message}\n${USAGE}`);
    return 2;
  }
  switch (command.command) {
    case 'none':
    case 'help':
      process.stdout.write(USAGE);
      return command.command === 'none' ? 2 : 0;
    case 'version':
      process.stdout.write(`sluice ${version()}\n`);
      return 0;
    case 'validate':
      return runValidate(command.configFile, process.stdout, process.stderr);
    case 'run': {
      separateStdout();
      return run({ configFile: command.configFile, takeover: command.takeover, ...(command.workers === undefined ? {} : { workers: command.workers }) });
    }
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
