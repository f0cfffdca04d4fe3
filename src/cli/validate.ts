/**
 * `sluice validate FILE`: loads a config the way `sluice run` would and reports the outcome: a one-line
 * summary on success (exit 0), or every problem, one per line with its key path (exit 2).
 */
import { ConfigError } from '../config/errors.js';
import { loadConfigFile } from '../config/load.js';

/** Exit status for a config with problems; 1 is left for crashes, so scripts can tell the two apart. */
const EXIT_INVALID_CONFIG = 2;

export function runValidate(file: string, out: NodeJS.WritableStream, err: NodeJS.WritableStream): number {
  try {
    const snapshot = loadConfigFile(file);
    const counts = [
      plural(snapshot.entryPoints.length, 'entry point'),
      plural(snapshot.routers.length, 'router'),
      plural(snapshot.services.length, 'service'),
      plural(snapshot.backends.length, 'backend'),
    ];
    out.write(`${file}: ok (${counts.join(', ')})\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    err.write(`${error.format()}\n`);
    return EXIT_INVALID_CONFIG;
  }
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
