/**
 * Reads a configuration (one file, or a Traefik static file and the dynamic files it names: sources.ts)
 * into a deep-frozen Snapshot, or throws a ConfigError listing every problem in document order: syntax
 * errors with line and column, then schema and cross-reference problems with the dotted path of the key at
 * fault, each naming the file it came from. Warnings (deprecated keys, Traefik v2 rule forms that still
 * work) come back beside the snapshot, in document order; they never stop a config from loading, and a
 * ConfigError carries them too.
 */
import { dirname, resolve } from 'node:path';

import { compile } from './compile.js';
import { ConfigError, Problems, keyPath, sortByDocumentOrder } from './errors.js';
import type { ConfigProblem, ConfigWarning } from './errors.js';
import type { Snapshot } from './snapshot.js';
import { parseText, readSources, type ConfigFormat, type WatchSet } from './sources.js';
import { validateDocument } from './validate.js';

export type { ConfigFormat } from './sources.js';

export interface LoadOverrides {
  /** `--workers` from the command line; wins over the file's `workers`. */
  readonly workers?: number;
  /** Shared-memory slots by backend identity (see CompileContext.assignSlot). */
  readonly assignSlot?: (service: string, url: string) => number;
}

/** A loaded config and what is worth telling about it; `sluice validate` prints the warnings, `run` logs them. */
export interface LoadedConfig {
  readonly snapshot: Snapshot;
  /** Each names its file (formatWarning). */
  readonly warnings: readonly ConfigWarning[];
}

export interface LoadResult extends LoadedConfig {
  /** What to watch for reloads: the config files, their directories, certificate and CA files. */
  readonly watch: WatchSet;
}

/** Load and compile the configuration named on the command line. */
export function loadConfig(file: string, overrides: LoadOverrides = {}): LoadResult {
  const source = readSources(file);
  const mainDir = dirname(resolve(file));
  const problems = new Problems();
  checkOverrides(overrides, problems);
  const migrated = migrateDeprecated(source.document, problems);
  const checked = validateDocument(source.document, problems);
  dropMigrated(problems, migrated);
  const snapshot = compile(
    checked,
    {
      source: file,
      baseDir: mainDir,
      workers: overrides.workers,
      assignSlot: overrides.assignSlot,
      // File labels are as the user named them (relative to the working directory) or absolute.
      baseDirFor: (path) => dirname(resolve(source.fileOf(path))),
    },
    problems,
  );
  const attribute = (list: readonly ConfigProblem[]): ConfigProblem[] =>
    sortByDocumentOrder(list, source.document).map((p) => (p.file !== undefined || source.files.length === 1 ? p : { ...p, file: source.fileOf(p.path) }));
  const warnings = attribute(problems.warnings).map((w) => ({ ...w, file: w.file ?? file }));
  if (!problems.empty) throw new ConfigError(file, attribute(problems.list), warnings);
  const certificateFiles = snapshot.certificates.flatMap((c) => [c.certFile, c.keyFile]);
  return {
    snapshot: deepFreeze(snapshot),
    warnings,
    watch: { paths: [...source.watch.paths, ...certificateFiles, ...caFiles(checked, source.fileOf)], staticFile: source.watch.staticFile },
  };
}

/** Files of serversTransports' rootCAs (a rotated CA is picked up by a reload, as certificates are). */
function caFiles(checked: ReturnType<typeof validateDocument>, fileOf: (path: string) => string): string[] {
  const files: string[] = [];
  for (const [name, transport] of Object.entries(checked.http?.serversTransports ?? {})) {
    const dir = dirname(resolve(fileOf(keyPath('http.serversTransports', name))));
    for (const ca of transport.rootCAs ?? []) files.push(resolve(dir, ca));
  }
  return files;
}

/** The snapshot of a configuration file (tests, tools): loadConfig without the warnings and watch set. */
export function loadConfigFile(file: string, overrides: LoadOverrides = {}): Snapshot {
  return loadConfig(file, overrides).snapshot;
}

/** The snapshot and warnings of a configuration file (`sluice validate`). */
export function loadConfigFileWithWarnings(file: string, overrides: LoadOverrides = {}): LoadedConfig {
  const { snapshot, warnings } = loadConfig(file, overrides);
  return { snapshot, warnings };
}

/**
 * The same as loadConfigFile for text already in memory (one file: no providers). `fileLabel` names the file
 * in messages and in Snapshot.source; relative certificate and CA paths are resolved from `baseDir`.
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
  const parsed = parseText(text, format);
  if ('syntax' in parsed) throw new ConfigError(fileLabel, parsed.syntax);
  const problems = new Problems();
  checkOverrides(overrides, problems);
  const migrated = migrateDeprecated(parsed.document, problems);
  const checked = validateDocument(parsed.document, problems);
  dropMigrated(problems, migrated);
  const snapshot = compile(checked, { source: fileLabel, baseDir, workers: overrides.workers, assignSlot: overrides.assignSlot }, problems);
  const warnings = sortByDocumentOrder(problems.warnings, parsed.document).map((warning) => ({ ...warning, file: fileLabel }));
  if (!problems.empty) throw new ConfigError(fileLabel, sortByDocumentOrder(problems.list, parsed.document), warnings);
  return { snapshot: deepFreeze(snapshot), warnings };
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date);
}

/**
 * Deprecated keys become their replacements in the document itself, before validation, so the rest of
 * the pipeline knows one key per meaning: `shutdown.gracePeriod` sets transport.lifeCycle.graceTimeOut on
 * every entry point that sets none (a warning says so).
 */
function migrateDeprecated(document: unknown, problems: Problems): Set<string> {
  const injected = new Set<string>();
  if (!isMapping(document) || !isMapping(document.shutdown) || document.shutdown.gracePeriod === undefined) return injected;
  const grace = document.shutdown.gracePeriod;
  problems.warn('shutdown.gracePeriod', 'deprecated: it sets entryPoints.<name>.transport.lifeCycle.graceTimeOut of every entry point that sets none (expected transport.lifeCycle.graceTimeOut on each entry point)');
  if (!isMapping(document.entryPoints)) return injected;
  for (const [name, entryPoint] of Object.entries(document.entryPoints)) {
    if (!isMapping(entryPoint)) continue;
    if (entryPoint.transport === undefined) entryPoint.transport = {};
    if (!isMapping(entryPoint.transport)) continue;
    if (entryPoint.transport.lifeCycle === undefined) entryPoint.transport.lifeCycle = {};
    if (isMapping(entryPoint.transport.lifeCycle) && entryPoint.transport.lifeCycle.graceTimeOut === undefined) {
      entryPoint.transport.lifeCycle.graceTimeOut = grace;
      injected.add(`${keyPath(keyPath('entryPoints', name), 'transport')}.lifeCycle.graceTimeOut`);
    }
  }
  return injected;
}

/** A bad deprecated value is reported once, at the key the user wrote, not again where it was copied. */
function dropMigrated(problems: Problems, injected: ReadonlySet<string>): void {
  if (injected.size === 0) return;
  const kept = problems.list.filter((p) => !injected.has(p.path));
  problems.list.length = 0;
  problems.list.push(...kept);
}

function checkOverrides(overrides: LoadOverrides, problems: Problems): void {
  if (overrides.workers !== undefined && !(Number.isInteger(overrides.workers) && overrides.workers >= 1)) {
    problems.add('', `--workers ${overrides.workers} is invalid (expected an integer ≥ 1)`);
  }
}

/** Freezes the whole tree: workers and reloads share snapshots, so nothing may change one after compile. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}
