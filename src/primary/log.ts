/**
 * The primary's structured log (pino): one JSON object per line on stderr, with `level` as a word and an
 * ISO `time`. Written synchronously, so the last lines before an exit are never lost; it is never called
 * per connection or per message (workers do not log on their hot paths). The level comes from `log.level`
 * once the config is loaded (setLogLevel); until then it is info.
 */
import pino from 'pino';
import type { LogLevel } from '../config/snapshot.js';

export const log = pino(
  {
    level: 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  },
  pino.destination({ fd: 2, sync: true }),
);

export function setLogLevel(level: LogLevel): void {
  log.level = level;
}
