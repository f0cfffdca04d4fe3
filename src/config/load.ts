/**
 * Reads a config file (YAML or TOML, chosen by extension) into a deep-frozen Snapshot, or throws a
 * ConfigError listing every problem in document order: syntax errors with line and column, then schema and
 * cross-reference problems with the dotted path of the key at fault. The *WithWarnings variants also return
 * the warnings (a config that loads but should be written differently), in document order.
 */
import { readFileSync } from 'node:fs';
import { dirname, extname, resolve } from 'node:path';

import { TomlError, parse as parseToml } from 'smol-toml';
import { LineCounter, parseDocument } from 'yaml';

import { compile } from './compile.js';
import { ConfigError, Problems, sortByDocumentOrder } from './errors.js';
import type { ConfigProblem, ConfigWarning } from './errors.js';
import type { Snapshot } from './snapshot.js';
import { validateDocument } from './validate.js';

export type ConfigFormat = 'yaml' | 'toml';

export interface LoadOverrides {
  /** `--workers` from the command line; wins over the file's `workers`. */
  readonly workers?: number;
}

/** A loaded config and what is worth telling about it; `sluice validate` prints the warnings, `run` logs them. */
export interface LoadedConfig {
  readonly snapshot: Snapshot;
  readonly warnings: readonly ConfigWarning[];
}

const FORMATS: Readonly<Record<string, ConfigFormat>> = { '.yaml': 'yaml', '.yml': 'yaml', '.toml': 'toml' };

export function loadConfigFile(file: string, overrides: LoadOverrides = {}): Snapshot {
  return loadConfigFileWithWarnings(file, overrides).snapshot;
}

export function loadConfigFileWithWarnings(file: string, overrides: LoadOverrides = {}): LoadedConfig {
  const format = FORMATS[extname(file).toLowerCase()];
  if (format === undefined) {
    throw new ConfigError(file, [
      { path: '', message: `unknown file type '${extname(file)}' (expected a .yaml, .yml or .toml file)` },
    ]);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : String(code);
    throw new ConfigError(file, [{ path: '', message: `cannot read config file: ${reason}` }]);
  }
  return loadConfigTextWithWarnings(text, format, file, dirname(resolve(file)), overrides);
}

/**
 * The same as loadConfigFile for text already in memory. `fileLabel` names the file in messages and in
 * Snapshot.source; relative certificate and CA paths are resolved from `baseDir`.
 */
export function loadConfigText(
  text: string,
  format: ConfigFormat,
  fileLabel: string,
  baseDir: string,
  overrides: LoadOverrides = {},
): Snapshot {
  return loadConfigTextWithWarnings(text, format, fileLabel, baseDir, overrides).snapshot;
}

export function loadConfigTextWithWarnings(
  text: string,
  format: ConfigFormat,
  fileLabel: string,
  baseDir: string,
  overrides: LoadOverrides = {},
): LoadedConfig {
  const parsed = format === 'yaml' ? parseYaml(text) : parseTomlText(text);
  if ('syntax' in parsed) throw new ConfigError(fileLabel, parsed.syntax);

  const problems = new Problems();
  if (overrides.workers !== undefined && !(Number.isInteger(overrides.workers) && overrides.workers >= 1)) {
    problems.add('', `--workers ${overrides.workers} is invalid (expected an integer ≥ 1)`);
  }
  const checked = validateDocument(parsed.document, problems);
  const snapshot = compile(checked, { source: fileLabel, baseDir, workers: overrides.workers }, problems);
  const warnings = sortByDocumentOrder(problems.warnings, parsed.document).map((warning) => ({ file: fileLabel, ...warning }));
  if (!problems.empty) throw new ConfigError(fileLabel, sortByDocumentOrder(problems.list, parsed.document), warnings);
  return { snapshot: deepFreeze(snapshot), warnings };
}

type Parsed = { document: unknown } | { syntax: ConfigProblem[] };

function parseYaml(text: string): Parsed {
  const lineCounter = new LineCounter();
  // Merge keys (`<<: *defaults`) are YAML 1.1, but people share settings between services that way.
  const document = parseDocument(text, { lineCounter, prettyErrors: false, merge: true, uniqueKeys: true });
  if (document.errors.length > 0) {
    return {
      syntax: document.errors.map((error) => {
        const { line, col } = lineCounter.linePos(error.pos[0]);
        return { path: '', line, column: col, message: `invalid YAML: ${firstLine(error.message)}` };
      }),
    };
  }
  try {
    return { document: document.toJS({ maxAliasCount: 1000 }) };
  } catch (error) {
    return { syntax: [{ path: '', message: `invalid YAML: ${firstLine(String((error as Error).message))}` }] };
  }
}

function parseTomlText(text: string): Parsed {
  try {
    return { document: parseToml(text) };
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    const reason = firstLine(error.message.replace(/^Invalid TOML document: /, ''));
    return { syntax: [{ path: '', line: error.line, column: error.column, message: `invalid TOML: ${reason}` }] };
  }
}

/** Parser messages are sentences with code excerpts below; the first line, lowercased, fits our format. */
function firstLine(message: string): string {
  const line = message.split('\n')[0]!.trim();
  return line.charAt(0).toLowerCase() + line.slice(1);
}

/** Freezes the whole tree: workers and reloads share snapshots, so nothing may change one after compile. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}
