#!/usr/bin/env node
// The `sluice` command: runs the compiled CLI (npm install builds it through the prepare script). Before
// `run` loads anything that loads uWebSockets.js, it checks that this Node.js has a uWebSockets.js binary
// and, if not, says so in one line (exit 1) instead of a stack trace from the first worker.
import { parseArguments } from '../dist/src/cli/arguments.js';
import { uwsRuntimeProblem } from '../dist/src/cli/runtime.js';

let runs = false;
try {
  runs = parseArguments(process.argv.slice(2)).command === 'run';
} catch {
  // A usage error: the CLI reports it.
}
const problem = runs ? uwsRuntimeProblem() : null;
if (problem === null) {
  await import('../dist/src/cli/main.js');
} else {
  process.stderr.write(`sluice: ${problem}\n`);
  process.exitCode = 1;
}
