/**
 * The `sluice` command line as data: which command, which config file, which overrides. It forgives the
 * habits operators bring: the file as an argument or as `--config FILE`, and Traefik's `--configFile=FILE`
 * (with or without `run`, as `traefik --configFile=FILE` starts Traefik). Anything it cannot read is a
 * UsageError with one sentence saying what was expected.
 */

export type Command =
  | { readonly command: 'help' | 'version' }
  /** `sluice` with nothing: usage on stdout, exit 2. */
  | { readonly command: 'none' }
  | { readonly command: 'validate'; readonly configFile: string }
  | { readonly command: 'run'; readonly configFile: string; readonly workers?: number; readonly takeover: boolean };

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const USAGE = `usage:
  sluice run FILE [--workers N] [--takeover]
                                           serve with the config in FILE (YAML or TOML)
  sluice run --config FILE [--workers N]   the same (also -c FILE or --config=FILE)
  sluice --configFile=FILE [--workers N]   the same, in Traefik's spelling (also after run,
                                           or as --configFile FILE)
  sluice validate FILE                     check FILE: every problem and warning, one per line
  sluice validate --config FILE            the same (also -c FILE or --configFile=FILE)
  sluice --version | --help
options:
  --workers N     worker threads (1-1024); overrides the config's 'workers' (default: available cores)
  --takeover      replace the Sluice that listens on these ports: listen beside it, then make it stop
                  accepting and close its connections paced over its graceTimeOut (no connection refused)
exit status: 0 ok (validate: also with warnings), 1 could not run (a port that cannot be opened, a
Node.js without a uWebSockets.js binary), 2 usage or config error
`;

/** Option names that take the config file; Traefik's flags are case-insensitive, so `--configfile` too. */
function isConfigOption(name: string): boolean {
  return name === '--config' || name === '-c' || name.toLowerCase() === '--configfile';
}

export function parseArguments(argv: readonly string[]): Command {
  const [first, ...rest] = argv;
  switch (first) {
    case undefined:
      return { command: 'none' };
    case '--help':
    case '-h':
    case 'help':
      return { command: 'help' };
    case '--version':
    case 'version':
      return { command: 'version' };
    case 'run':
      return parseRun(rest);
    case 'validate':
      return { command: 'validate', configFile: parseFileAndWorkers('validate', rest, false).file };
    default:
      // `sluice --configFile=FILE` runs, as `traefik --configFile=FILE` does.
      if (isConfigOption(optionName(first)) || optionName(first) === '--workers') return parseRun(argv);
      throw new UsageError(`unknown command '${first}' (expected run or validate)`);
  }
}

function parseRun(args: readonly string[]): Command {
  const takeover = args.includes('--takeover');
  const { file, workers } = parseFileAndWorkers('run', args.filter((a) => a !== '--takeover'), true);
  return workers === undefined ? { command: 'run', configFile: file, takeover } : { command: 'run', configFile: file, workers, takeover };
}

function optionName(arg: string): string {
  const equals = arg.startsWith('-') ? arg.indexOf('=') : -1;
  return equals > 0 ? arg.slice(0, equals) : arg;
}

function parseFileAndWorkers(command: 'run' | 'validate', args: readonly string[], takesWorkers: boolean): { file: string; workers?: number } {
  const files: string[] = [];
  let workers: number | undefined;
  let optionsEnded = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (optionsEnded || !arg.startsWith('-') || arg === '-') {
      files.push(arg);
      continue;
    }
    if (arg === '--') {
      optionsEnded = true;
      continue;
    }
    const name = optionName(arg);
    const inline = name.length < arg.length ? arg.slice(name.length + 1) : undefined;
    const value = inline ?? args[i + 1];
    if (isConfigOption(name)) {
      if (value === undefined || value === '') throw new UsageError(`${name} needs a FILE`);
      files.push(value);
    } else if (name === '--workers' || name === '-w') {
      if (!takesWorkers) throw new UsageError(`${command}: unknown option '${arg}' (expected FILE or --config FILE)`);
      if (value === undefined || !/^[1-9]\d*$/.test(value) || Number(value) > 1024) {
        throw new UsageError(`${name}: invalid value '${value ?? ''}' (expected an integer from 1 to 1024, as the workers key)`);
      }
      workers = Number(value);
    } else {
      const expected = takesWorkers ? 'FILE, --config FILE, --workers N or --takeover' : 'FILE or --config FILE';
      throw new UsageError(`${command}: unknown option '${arg}' (expected ${expected})`);
    }
    if (inline === undefined) i++;
  }
  if (files.length === 0) throw new UsageError(`${command} needs a config FILE (sluice ${command} FILE)`);
  if (files.length > 1) {
    throw new UsageError(`${command} takes one config file, got ${files.map((f) => `'${f}'`).join(' and ')}`);
  }
  return workers === undefined ? { file: files[0]! } : { file: files[0]!, workers };
}
