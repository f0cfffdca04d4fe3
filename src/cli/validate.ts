/**
 * `sluice validate FILE`: loads a config the way `sluice run` would and reports the outcome: a one-line
 * summary on stdout on success (exit 0), or every problem, one per line with its key path (exit 2).
 * Warnings go to stderr as `FILE: path: warning: …` and do not change the exit status.
 */
import { ConfigError, formatWarning } from '../config/errors.js';
import type { ConfigWarning } from '../config/errors.js';
import { loadConfigFileWithWarnings } from '../config/load.js';

/** Exit status for a config with problems; 1 is left for crashes, so scripts can tell the two apart. */
const EXIT_INVALID_CONFIG = 2;

export function runValidate(file: string, out: NodeJS.WritableStream, err: NodeJS.WritableStream): number {
  try {
    const { snapshot, warnings } = loadConfigFileWithWarnings(file);
    writeWarnings(warnings, err);
    const counts = [
      plural(snapshot.entryPoints.length, 'entry point'),
      plural(snapshot.routers.length, 'router'),
      plural(snapshot.services.length, 'service'),
      plural(snapshot.backends.length, 'backend'),
    ];
    const verdict = warnings.length === 0 ? 'ok' : `ok with ${plural(warnings.length, 'warning')}`;
    out.write(`${file}: ${verdict} (${counts.join(', ')})\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    err.write(`${error.format()}\n`);
    writeWarnings(error.warnings, err);
    return EXIT_INVALID_CONFIG;
  }
}

function writeWarnings(warnings: readonly ConfigWarning[], err: NodeJS.WritableStream): void {
  if (warnings.length > 0) err.write(`${warnings.map(formatWarning).join('\n')}\n`);
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
