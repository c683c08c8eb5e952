// Runs the test suites with node:test: transpiles test/*.ts (which import the built package by its own name, so the
// `exports` map is what gets tested) into .test-build/ and runs every *.test.js there. Pass file names to run some.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (!existsSync(join(root, 'dist', 'esm', 'index.js'))) {
  console.error('dist/ is missing: run `npm run build` first');
  process.exit(1);
}
const out = join(root, '.test-build');
rmSync(out, { recursive: true, force: true });
const sources = readdirSync(join(root, 'test')).filter((f) => f.endsWith('.ts')).map((f) => join(root, 'test', f));
await esbuild.build({ entryPoints: sources, outdir: out, format: 'esm', platform: 'node', target: 'node20', logLevel: 'warning' });
const only = process.argv.slice(2).map((name) => join(out, name.replace(/\.ts$/, '.js')));
const files = only.length ? only : readdirSync(out).filter((f) => f.endsWith('.test.js')).map((f) => join(out, f));
const run = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(run.status ?? 1);
