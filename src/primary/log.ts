/**
 * The primary's log lines: one line each on stderr, `time level message`. Never called per
 * connection or per message (workers do not log on their hot paths).
 */
type Level = 'info' | 'warn' | 'error';

function write(level: Level, message: string): void {
  process.stderr.write(`${new Date().toISOString()} ${level} ${message}\n`);
}

export const log = {
  info: (message: string): void => write('info', message),
  warn: (message: string): void => write('warn', message),
  error: (message: string): void => write('error', message),
};
