/**
 * Whether this Node.js can load uWebSockets.js, checked before anything imports it. uWebSockets.js ships
 * one prebuilt binary per platform, CPU and Node.js ABI (`uws_linux_x64_115.node` is Node 20 on x64 Linux)
 * and nothing else, so on a Node.js it was not built for, `npm install` succeeds and the first worker dies
 * with "Cannot find module '../binaries/uws_linux_x64_127.node'". This turns that into one line naming the
 * Node.js found, the ones that work with the binaries installed, and the README section to read.
 * Imports only Node built-ins: bin/sluice.js runs it before loading the rest of Sluice.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** Node.js major version by ABI (process.versions.modules), for the releases uWebSockets.js has shipped. */
const NODE_MAJOR_BY_ABI: Readonly<Record<number, number>> = { 93: 16, 108: 18, 115: 20, 120: 21, 127: 22, 131: 23, 137: 24, 141: 25 };

/** The oldest Node.js Sluice itself runs on (package.json engines). */
const OLDEST_SUPPORTED_MAJOR = 20;

const README_SECTION = 'README.md, section "Node.js versions"';

/** Null when the binary for this Node.js is installed; otherwise the one-line explanation. */
export function uwsRuntimeProblem(): string | null {
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve('uWebSockets.js');
  } catch {
    return `uWebSockets.js is not installed (run npm install; see ${README_SECTION})`;
  }
  // The official build keeps its binaries beside uws.js; the rebuild Sluice bundles, in ../binaries.
  const folders = [dirname(entry), join(dirname(entry), '..', 'binaries')];
  const prefix = `uws_${process.platform}_${process.arch}_`;
  const abi = Number(process.versions.modules);
  if (folders.some((folder) => existsSync(join(folder, `${prefix}${abi}.node`)))) return null;

  const shipped = new Set<number>();
  for (const folder of folders) {
    let names: string[] = [];
    try {
      names = readdirSync(folder);
    } catch {
      continue;
    }
    for (const name of names) {
      const match = /^uws_(.+)_(\d+)\.node$/.exec(name);
      if (match !== null && `uws_${match[1]}_` === prefix) shipped.add(Number(match[2]));
    }
  }
  const working = [...shipped]
    .map((shippedAbi) => NODE_MAJOR_BY_ABI[shippedAbi])
    .filter((major): major is number => major !== undefined && major >= OLDEST_SUPPORTED_MAJOR)
    .sort((a, b) => a - b);
  const which = working.length === 0 ? 'none of the Node.js versions Sluice supports' : `Node.js ${working.join(', ')}`;
  return (
    `Node.js ${process.version} (ABI ${abi}) cannot run Sluice: the installed uWebSockets.js has no ` +
    `${process.platform}-${process.arch} binary for it, only for ${which}; see ${README_SECTION}`
  );
}
