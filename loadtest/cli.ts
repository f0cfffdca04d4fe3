/**
 * `npm run loadtest -- <scenario> [options]`: parses the options (exit 2 with one sentence when
 * they are wrong), runs the load, prints progress on a terminal and the summary (or --json) at the
 * end. The first Ctrl-C stops the run and still prints what was measured; a second one quits.
 */
import { HELP, UsageError, parseOptions, type LoadOptions } from './options.js';
import { formatProgress, formatSummary } from './report.js';
import { runLoad } from './run.js';

async function main(argv: readonly string[]): Promise<number> {
  let options: LoadOptions | null;
  try {
    options = parseOptions(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`loadtest: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (options === null) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const o = options;
  const abort = new AbortController();
  let interrupts = 0;
  process.on('SIGINT', () => {
    if (++interrupts > 1) process.exit(130);
    process.stderr.write('\nloadtest: stopping, printing what was measured (Ctrl-C again to quit at once)\n');
    abort.abort();
  });
  const showProgress = o.progress && process.stderr.isTTY === true;
  const report = await runLoad(o, {
    signal: abort.signal,
    onProgress: showProgress ? (p) => process.stderr.write(`${formatProgress(p, o)}\n`) : undefined,
  });
  process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatSummary(report, o)}\n`);
  const nothingWorked = o.scenario === 'churn' ? report.upgrades === 0 && !report.interrupted : report.connections.opened === 0;
  if (nothingWorked) process.stderr.write(`loadtest: no connection could be opened (${JSON.stringify(report.connections.failures)})\n`);
  return nothingWorked ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    process.stderr.write(`loadtest: ${err.stack ?? err.message}\n`);
    process.exitCode = 1;
  },
);
