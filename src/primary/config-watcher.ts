/**
 * Watches the configuration's files for changes and asks for one reload per burst. Directories are
 * watched, not files: an editor that writes a temporary file and renames it over the config, and
 * Kubernetes updating a mounted ConfigMap (a new `..2026_…` directory, then the `..data` symlink swapped
 * by a rename), both replace the file's inode, which a watch on the file itself would lose. Every event in
 * a watched directory that concerns a watched name (or Kubernetes' `..` entries) restarts a short quiet
 * period; when it ends, one reload runs. The reload compares what it compiled with the config in force, so
 * an event that changed nothing costs a parse and nothing else.
 *
 * Traefik's static file is read at start only: a change to it is reported, not applied (a restart or
 * `sluice run --takeover` applies it).
 */
import { statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { WatchSet } from '../config/sources.js';
import { log } from './log.js';

/** Quiet time after the last event before reloading: editors and kubelet write in several steps. */
export const DEBOUNCE_MS = 200;

export class ConfigWatcher {
  private watchers = new Map<string, FSWatcher>();
  /** Per watched directory: the names in it that matter ('*' = every name: a watched directory). */
  private names = new Map<string, Set<string>>();
  private staticFile: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private staticTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly onChange: (what: string) => void,
    private readonly onStaticChange: (file: string) => void,
  ) {}

  /** Watch exactly what `set` names (called at start and after each reload, whose files may differ). */
  update(set: WatchSet): void {
    if (this.closed) return;
    const wanted = new Map<string, Set<string>>();
    const add = (dir: string, name: string): void => {
      let names = wanted.get(dir);
      if (names === undefined) wanted.set(dir, (names = new Set()));
      names.add(name);
    };
    for (const path of set.paths) {
      const full = resolve(path);
      let isDir = false;
      try {
        isDir = statSync(full).isDirectory();
      } catch {
        // Missing now: watch its directory, so that its creation is seen.
      }
      if (isDir) add(full, '*');
      else add(dirname(full), basename(full));
    }
    this.staticFile = set.staticFile === null ? null : resolve(set.staticFile);
    if (this.staticFile !== null) add(dirname(this.staticFile), basename(this.staticFile));
    for (const [dir, watcher] of this.watchers) {
      if (wanted.has(dir)) continue;
      watcher.close();
      this.watchers.delete(dir);
    }
    this.names = wanted;
    for (const dir of wanted.keys()) {
      if (this.watchers.has(dir)) continue;
      try {
        const watcher = watch(dir, { persistent: false }, (_event, name) => this.event(dir, name === null ? null : String(name)));
        watcher.on('error', (error) => log.warn(`config watch on ${dir}: ${error.message}; SIGHUP or POST /api/reload still reload`));
        this.watchers.set(dir, watcher);
      } catch (error) {
        log.warn(`cannot watch ${dir} for config changes: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}; SIGHUP or POST /api/reload still reload`);
      }
    }
  }

  private event(dir: string, name: string | null): void {
    const names = this.names.get(dir);
    if (names === undefined) return;
    const relevant = name === null || names.has('*') || names.has(name) || name.startsWith('..');
    if (!relevant) return;
    if (this.staticFile !== null && name !== null && resolve(dir, name) === this.staticFile) this.staticEvent();
    else this.schedule(name === null ? dir : resolve(dir, name));
  }

  private schedule(what: string): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.closed) this.onChange(what);
    }, DEBOUNCE_MS);
  }

  private staticEvent(): void {
    if (this.staticTimer !== null) clearTimeout(this.staticTimer);
    this.staticTimer = setTimeout(() => {
      this.staticTimer = null;
      if (!this.closed && this.staticFile !== null) this.onStaticChange(this.staticFile);
    }, DEBOUNCE_MS);
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.staticTimer !== null) clearTimeout(this.staticTimer);
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }
}
