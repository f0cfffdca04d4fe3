/**
 * Where a configuration comes from, and how several files become one document. Either one file holds
 * everything (Sluice's own layout), or a Traefik static file names its dynamic configuration with
 * `providers.file.filename` or `providers.file.directory`: the dynamic files are merged into the static
 * document here, before validation, remembering which file each key came from so every problem names the
 * file the user has to fix.
 *
 * Merge rules (Traefik logs and skips a duplicate definition; Sluice refuses it, because a silent skip is
 * how routes go missing): a router, service, middleware or servers transport defined in two files is an
 * error naming both, unless both definitions are identical; `tls.certificates` lists are concatenated;
 * Sluice's own keys may sit in the static file or in any dynamic file, and the same key with two different
 * values is an error naming both files. `entryPoints` and `providers` belong to the static file.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';

import { TomlError, parse as parseToml } from 'smol-toml';
import { LineCounter, parseDocument } from 'yaml';

import { ConfigError, indexPath, keyPath, type ConfigProblem } from './errors.js';
import { readManifestProvider } from './kubernetes-manifest-files.js';

export type ConfigFormat = 'yaml' | 'toml';

const FORMATS: Readonly<Record<string, ConfigFormat>> = { '.yaml': 'yaml', '.yml': 'yaml', '.toml': 'toml' };

export function formatOf(file: string): ConfigFormat | undefined {
  return FORMATS[extname(file).toLowerCase()];
}

/** What a reload watches: any change in these directories may change the configuration. */
export interface WatchSet {
  /** Files and directories whose change triggers a reload (the single file, the dynamic file or
   *  directory, certificate and CA files). Directories are watched, not files, so an editor's
   *  rename-over-write and Kubernetes' ConfigMap symlink swap are seen. */
  readonly paths: readonly string[];
  /** Traefik's static file: read at start only; a change is logged (restart or --takeover applies it). */
  readonly staticFile: string | null;
}

/** The merged document, and for each key path the file it came from. */
export interface MergedSource {
  readonly document: unknown;
  /** The file named on the command line (problems without a better origin name it). */
  readonly mainFile: string;
  /** Every file read, in order (the main file first). */
  readonly files: readonly string[];
  /** Origin file of a config key path (the longest recorded prefix wins). */
  fileOf(path: string): string;
  /** A problem found on the merged document, with the file it came from (a manifest also names the
   *  document and field the key was made from). */
  locate(problem: ConfigProblem): ConfigProblem;
  readonly watch: WatchSet;
}

/** A parsed file, or the syntax problems that stopped it. */
type Parsed = { document: unknown } | { syntax: ConfigProblem[] };

export function parseText(text: string, format: ConfigFormat): Parsed {
  return format === 'yaml' ? parseYaml(text) : parseTomlText(text);
}

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

function readProblem(file: string, error: unknown): ConfigProblem {
  const code = (error as NodeJS.ErrnoException).code;
  const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : String(code);
  return { path: '', file, message: `cannot read config file: ${reason}` };
}

/** Read and parse one file; throws a ConfigError naming it on a read or syntax error. */
export function readConfigDocument(file: string): unknown {
  const format = formatOf(file);
  if (format === undefined) {
    throw new ConfigError(file, [{ path: '', message: `unknown file type '${extname(file)}' (expected a .yaml, .yml or .toml file)` }]);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, [readProblem(file, error)]);
  }
  const parsed = parseText(text, format);
  if ('syntax' in parsed) throw new ConfigError(file, parsed.syntax);
  return parsed.document;
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date);
}

/** Levels whose children are named definitions (a router, a service…): merged by name, never deep. */
const NAMED = new Set(['http.routers', 'http.services', 'http.middlewares', 'http.serversTransports', 'tls.options', 'tls.stores']);
/** Lists that several files extend. */
const APPENDED = new Set(['tls.certificates']);
/** Top-level keys only the static file may hold. */
const STATIC_ONLY = new Set(['entryPoints', 'providers']);

class Merger {
  readonly origins = new Map<string, string>();
  readonly problems: ConfigProblem[] = [];
  readonly root: Record<string, unknown> = {};

  constructor(private readonly mainFile: string) {}

  add(document: unknown, file: string, isStatic: boolean): void {
    if (document === null || document === undefined) return;
    if (!isMapping(document)) {
      this.problems.push({ path: '', file, message: 'expected a mapping of configuration keys at the top of the file' });
      return;
    }
    for (const [key, value] of Object.entries(document)) {
      if (!isStatic && STATIC_ONLY.has(key)) {
        this.problems.push({ path: key, file, message: `'${key}' belongs in the static configuration ${this.mainFile} (expected only dynamic keys such as http and tls in a dynamic file)` });
        continue;
      }
      this.mergeInto(this.root, key, value, keyPath('', key), file);
    }
  }

  private mergeInto(target: Record<string, unknown>, key: string, value: unknown, path: string, file: string): void {
    if (!Object.hasOwn(target, key)) {
      target[key] = value;
      this.record(path, value, file);
      return;
    }
    const existing = target[key];
    if (APPENDED.has(path) && Array.isArray(existing) && Array.isArray(value)) {
      const start = existing.length;
      value.forEach((item, i) => this.record(indexPath(path, start + i), item, file));
      target[key] = [...existing, ...value];
      return;
    }
    if (isMapping(existing) && isMapping(value)) {
      if (NAMED.has(path)) {
        for (const [name, definition] of Object.entries(value)) {
          const at = keyPath(path, name);
          if (Object.hasOwn(existing, name)) {
            if (!isDeepStrictEqual(existing[name], definition)) this.conflict(at, file, 'defined differently', 'one definition, or identical ones');
            continue;
          }
          existing[name] = definition;
          this.record(at, definition, file);
        }
        return;
      }
      // A copy, so a later conflict check compares against what each file said, not a merged object.
      const merged = { ...existing };
      target[key] = merged;
      for (const [child, item] of Object.entries(value)) this.mergeInto(merged, child, item, keyPath(path, child), file);
      return;
    }
    if (!isDeepStrictEqual(existing, value)) this.conflict(path, file, 'set to different values', 'one value');
  }

  private conflict(path: string, file: string, what: string, expected: string): void {
    const first = this.fileOf(path);
    this.problems.push({ path, file, message: `${what} in ${first} and ${file} (expected ${expected})` });
  }

  /** Remember where `path` (and, for mappings, its top) came from. */
  private record(path: string, _value: unknown, file: string): void {
    this.origins.set(path, file);
  }

  fileOf(path: string): string {
    for (let p = path; ; ) {
      const file = this.origins.get(p);
      if (file !== undefined) return file;
      const parent = parentPath(p);
      if (parent === p) return this.mainFile;
      p = parent;
    }
  }
}

function parentPath(path: string): string {
  const match = /(\.[A-Za-z0-9_-]+|\[\d+\]|\["(?:[^"\\]|\\.)*"\])$/.exec(path);
  return match ? path.slice(0, match.index) : '';
}

/**
 * Read the configuration named on the command line, with every dynamic file it names. Throws a
 * ConfigError when a file cannot be read or parsed, or when the files conflict.
 */
export function readSources(mainFile: string): MergedSource {
  const main = readConfigDocument(mainFile);
  const mainDir = dirname(resolve(mainFile));
  const provider = isMapping(main) && isMapping(main.providers) && isMapping(main.providers.file) ? main.providers.file : undefined;
  const merger = new Merger(mainFile);
  merger.add(main, mainFile, true);
  const files = [mainFile];
  const watchPaths: string[] = [];
  let staticFile: string | null = null;
  if (provider === undefined) {
    watchPaths.push(resolve(mainFile));
  } else {
    staticFile = resolve(mainFile);
    const watch = provider.watch !== false;
    const problems: ConfigProblem[] = [];
    const dynamicFiles: string[] = [];
    const { filename, directory } = provider;
    if (typeof filename === 'string' && typeof directory === 'string') {
      problems.push({ path: 'providers.file', file: mainFile, message: 'filename and directory are both set (expected one of them)' });
    } else if (typeof filename === 'string') {
      const file = resolve(mainDir, filename);
      dynamicFiles.push(file);
      if (watch) watchPaths.push(file);
    } else if (typeof directory === 'string') {
      const dir = resolve(mainDir, directory);
      try {
        if (!statSync(dir).isDirectory()) throw Object.assign(new Error(), { code: 'ENOTDIR' });
        for (const name of readdirSync(dir).sort()) {
          // Traefik skips files it cannot read as configuration; hidden files are editors' and
          // Kubernetes' own (..data, ..2024_…), never configuration.
          if (name.startsWith('.') || formatOf(name) === undefined) continue;
          const file = join(dir, name);
          if (statSync(file).isFile()) dynamicFiles.push(file);
        }
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        const reason = code === 'ENOENT' ? 'no such directory' : code === 'ENOTDIR' ? 'not a directory' : String(code);
        problems.push({ path: 'providers.file.directory', file: mainFile, message: `cannot read '${directory}': ${reason} (expected a directory of .yaml, .yml or .toml files, relative to ${basename(mainFile)})` });
      }
      if (watch) watchPaths.push(dir);
    } else if (filename !== undefined || directory !== undefined) {
      // Wrong types are reported by validation with their path.
    } else {
      problems.push({ path: 'providers.file', file: mainFile, message: 'names no dynamic configuration (expected filename or directory)' });
    }
    if (problems.length > 0) throw new ConfigError(mainFile, problems);
    const syntax: ConfigProblem[] = [];
    for (const file of dynamicFiles) {
      let document: unknown;
      try {
        document = readConfigDocument(file);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        syntax.push(...error.problems.map((p) => ({ ...p, file: p.file ?? relativeLabel(mainFile, file) })));
        continue;
      }
      const label = relativeLabel(mainFile, file);
      files.push(label);
      merger.add(document, label, false);
    }
    if (syntax.length > 0) throw new ConfigError(mainFile, syntax);
  }
  // Kubernetes manifests: one more dynamic source, made of the keys a dynamic file would hold.
  const manifests = readManifestProvider(main, mainFile, (file) => relativeLabel(mainFile, file));
  if (manifests !== undefined) {
    if (manifests.problems.length > 0) throw new ConfigError(mainFile, manifests.problems);
    const tls = merger.root.tls;
    manifests.certificateOffset = isMapping(tls) && Array.isArray(tls.certificates) ? tls.certificates.length : 0;
    merger.add(manifests.document(), manifests.label, false);
    files.push(...manifests.files);
    if (manifests.settings.watch) watchPaths.push(manifests.settings.directory, manifests.settings.secretsDirectory);
  }
  if (merger.problems.length > 0) throw new ConfigError(mainFile, merger.problems);
  return {
    document: merger.root,
    mainFile,
    files,
    fileOf: (path) => merger.fileOf(path),
    locate: (problem) => manifests?.locate(problem) ?? { ...problem, file: merger.fileOf(problem.path) },
    watch: { paths: watchPaths, staticFile },
  };
}

/** A dynamic file as messages name it: relative to where the static file was named from. */
function relativeLabel(mainFile: string, file: string): string {
  const base = dirname(mainFile);
  const abs = resolve(file);
  const from = resolve(base);
  return abs.startsWith(`${from}/`) ? join(base, abs.slice(from.length + 1)) : abs;
}
