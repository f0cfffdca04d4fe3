/**
 * Config errors as a user interface: every problem in a file is collected (never stop at the first),
 * each carries the dotted path of the key at fault, and ConfigError.format() prints one line per problem,
 * in document order, as `FILE: path.to.key: what is wrong (expected …)`. Warnings (a config that works but
 * should be written differently, such as Traefik v2 rule syntax) are collected beside the errors in the same
 * shape; they never stop a config from loading.
 */

export interface ConfigProblem {
  /** Dotted path of the offending key, e.g. `http.services.chat.loadBalancer.servers[1].url`; '' for the whole file. */
  path: string;
  /** Lowercase, the bad value quoted, ending with `(expected …)` when there is something to expect. */
  message: string;
  /** 1-based position, set only for syntax errors (the parser knows it; paths do not exist yet). */
  line?: number;
  column?: number;
  /** The file the key came from, when a configuration spans several files (Traefik's static file and its
   *  dynamic files); absent = the file the ConfigError names. */
  file?: string;
}

/** A warning with the file it was found in (config may come from several files). */
export interface ConfigWarning extends ConfigProblem {
  readonly file: string;
}

export class ConfigError extends Error {
  readonly file: string;
  readonly problems: readonly ConfigProblem[];
  /** Warnings found in the same file, for a report that lists everything at once. */
  readonly warnings: readonly ConfigWarning[];

  constructor(file: string, problems: readonly ConfigProblem[], warnings: readonly ConfigWarning[] = []) {
    // The message is the full report, so whoever only logs error.message still shows every problem.
    super(problems.map((problem) => formatProblem(file, problem)).join('\n'));
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
    this.warnings = warnings;
  }

  /** One line per problem, no trailing newline. */
  format(): string {
    return this.problems.map((problem) => formatProblem(this.file, problem)).join('\n');
  }
}

export function formatProblem(defaultFile: string, problem: ConfigProblem): string {
  const file = problem.file ?? defaultFile;
  if (problem.line !== undefined) {
    return `${file}:${problem.line}:${problem.column ?? 1}: ${problem.message}`;
  }
  return problem.path === '' ? `${file}: ${problem.message}` : `${file}: ${problem.path}: ${problem.message}`;
}

/**
 * `FILE: path.to.key: warning: message`, the compilers' convention, so a warning printed next to errors
 * reads as one.
 */
export function formatWarning(warning: ConfigWarning): string {
  return formatProblem(warning.file, { ...warning, message: `warning: ${warning.message}` });
}

/** Collects problems while validation walks on; compile adds its own to the same list. Warnings (a
 *  deprecated key, a form that still works but has a newer spelling) never stop a config from loading. */
export class Problems {
  readonly list: ConfigProblem[] = [];
  readonly warnings: ConfigProblem[] = [];

  add(path: string, message: string): void {
    this.list.push({ path, message });
  }

  warn(path: string, message: string): void {
    this.warnings.push({ path, message });
  }

  get empty(): boolean {
    return this.list.length === 0;
  }
}

/** Path of a key below `parent`. Names that are not plain identifiers are quoted so the path stays readable. */
export function keyPath(parent: string, key: string): string {
  const part = /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
  if (parent === '') return part;
  return part.startsWith('"') ? `${parent}[${part}]` : `${parent}.${part}`;
}

export function indexPath(parent: string, index: number): string {
  return `${parent}[${index}]`;
}

/**
 * Sorts problems into document order: each problem is placed at the deepest key of its path that exists in
 * the document (a missing key is reported where its parent is). The sort is stable, so problems on the same
 * key keep the order in which they were found.
 */
export function sortByDocumentOrder(problems: readonly ConfigProblem[], document: unknown): ConfigProblem[] {
  const order = new Map<string, number>();
  const visit = (value: unknown, path: string): void => {
    order.set(path, order.size);
    if (Array.isArray(value)) {
      value.forEach((item, i) => visit(item, indexPath(path, i)));
    } else if (value !== null && typeof value === 'object') {
      for (const [key, item] of Object.entries(value)) visit(item, keyPath(path, key));
    }
  };
  visit(document, '');
  const anchor = (path: string): number => {
    for (let p = path; ; p = parentPath(p)) {
      const at = order.get(p);
      if (at !== undefined) return at;
      if (p === '') return -1;
    }
  };
  return problems
    .map((problem, i) => ({ problem, i, at: anchor(problem.path) }))
    .sort((a, b) => a.at - b.at || a.i - b.i)
    .map(({ problem }) => problem);
}

function parentPath(path: string): string {
  // Strip the last `.key`, `[n]` or `["quoted key"]`.
  const match = /(\.[A-Za-z0-9_-]+|\[\d+\]|\["(?:[^"\\]|\\.)*"\])$/.exec(path);
  return match ? path.slice(0, match.index) : '';
}

/** A value as the user wrote it, for messages: strings quoted, containers named. */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return 'an empty value';
  if (typeof value === 'string') return `'${value}'`;
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Date) return `a date (${value.toISOString()})`;
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

/**
 * Edit distance for "did you mean": insertions, deletions, substitutions and swaps of two neighbouring
 * letters (`Hots` for `Host`) each cost 1, case ignored (optimal string alignment). Inputs are config key and
 * matcher names, so quadratic cost is fine.
 */
export function editDistance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  let before: number[] = [];
  let previous = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const current = [i];
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      let best = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) best = Math.min(best, before[j - 2]! + 1);
      current.push(best);
    }
    before = previous;
    previous = current;
  }
  return previous[y.length]!;
}

/** The closest candidate when it is close enough to be a typo (at most a third of the name wrong). */
export function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const limit = Math.max(1, Math.floor(Math.max(name.length, 3) / 3));
  return bestDistance <= limit ? best : undefined;
}

/**
 * `unknown X 'name': did you mean 'y'? (expected one of: a, b)`: the shared shape of every bad-name message.
 * `whenNone` is the expectation to state when there are no candidates at all.
 */
export function unknownName(kind: string, name: string, candidates: readonly string[], whenNone = 'nothing here'): string {
  const suggestion = closest(name, candidates);
  const hint = suggestion === undefined ? '' : `: did you mean '${suggestion}'?`;
  const expected = candidates.length === 0 ? `(expected ${whenNone})` : `(expected one of: ${candidates.join(', ')})`;
  return `unknown ${kind} '${name}'${hint} ${expected}`;
}
