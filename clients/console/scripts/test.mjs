// Runs the browser tests with node:test: transpiles test/*.ts into .test-build/ and runs every *.test.js there.
// They start the harness binary (target/debug/local, or $BELLHOP_HARNESS) and drive Debian's chromium.
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, '.test-build');
rmSync(out, { recursive: true, force: true });
const sources = readdirSync(join(root, 'test')).filter((f) => f.endsWith('.ts')).map((f) => join(root, 'test', f));
await esbuild.build({ entryPoints: sources, outdir: out, format: 'esm', platform: 'node', target: 'node20', logLevel: 'warning' });
const files = readdirSync(out).filter((f) => f.endsWith('.test.js')).map((f) => join(out, f));
const run = spawnSync(process.execPath, ['--test', '--test-reporter=spec', '--test-concurrency=1', ...files], { stdio: 'inherit' });
process.exit(run.status ?? 1);
