/**
 * Where the manifest provider's documents come from: the provider's settings read from the static document
 * (paths resolved from the static file's directory) and the directory's .yaml/.yml files, each handed to a
 * ManifestSource (kubernetes-manifests.ts) that turns it into dynamic configuration. Unreadable directories
 * and files become problems naming them, like any other config error.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import { ManifestSource, isMapping, type ManifestSettings } from './kubernetes-manifests.js';

/**
 * Reads every .yaml/.yml file of the directory (sorted; hidden files skipped: Kubernetes' `..data` and
 * editors' own). `labelOf` names a file in messages as the user knows it.
 */
export function readManifestDirectory(settings: ManifestSettings, label: string, labelOf: (file: string) => string): ManifestSource {
  const source = new ManifestSource(settings, label);
  let names: string[];
  try {
    if (!statSync(settings.directory).isDirectory()) throw Object.assign(new Error(), { code: 'ENOTDIR' });
    names = readdirSync(settings.directory).sort();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such directory' : code === 'ENOTDIR' ? 'not a directory' : String(code);
    source.problems.push({ path: 'providers.kubernetesManifests.directory', message: `cannot read '${label}': ${reason} (expected a directory of .yaml or .yml manifests)` });
    return source;
  }
  for (const name of names) {
    if (name.startsWith('.') || !/\.ya?ml$/i.test(name)) continue;
    const file = resolve(settings.directory, name);
    try {
      if (!statSync(file).isFile()) continue;
      source.readFile(labelOf(file), readFileSync(file, 'utf8'));
    } catch (error) {
      source.problems.push({ path: '', file: labelOf(file), message: `cannot read manifest: ${(error as NodeJS.ErrnoException).code ?? String(error)}` });
    }
  }
  return source;
}

/**
 * The manifest provider named in the static document (`providers.kubernetesManifests`), read; undefined when
 * there is none or its directory is not a string (validation reports the type). Paths are resolved from the
 * static file's directory.
 */
export function readManifestProvider(main: unknown, mainFile: string, labelOf: (file: string) => string): ManifestSource | undefined {
  const providers = isMapping(main) ? main.providers : undefined;
  const config = isMapping(providers) ? providers.kubernetesManifests : undefined;
  if (!isMapping(config) || typeof config.directory !== 'string') return undefined;
  const base = dirname(resolve(mainFile));
  const directory = resolve(base, config.directory);
  const settings: ManifestSettings = {
    directory,
    secretsDirectory: typeof config.secretsDirectory === 'string' ? resolve(base, config.secretsDirectory) : join(directory, 'secrets'),
    clusterDomain: typeof config.clusterDomain === 'string' ? config.clusterDomain : 'cluster.local',
    watch: config.watch !== false,
  };
  return readManifestDirectory(settings, labelOf(directory), labelOf);
}
