// Builds dist/: ESM and CommonJS per source file (so `bellhop-client`, `/react` and `/server` share one copy of the
// client), declarations for both, and one minified browser bundle whose gzipped size is checked against the budget.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
/** The budget for the main entry, minified and gzipped: well under socket.io-client's 14.7 kB. */
const BUDGET_BYTES = 8000;

const sources = (dir) =>
  readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(root, dir, e.name)] : [],
  );

rmSync(dist, { recursive: true, force: true });
const entryPoints = sources('src');
for (const format of ['esm', 'cjs']) {
  await esbuild.build({ entryPoints, outdir: join(dist, format), outbase: join(root, 'src'), format, target: 'es2020', platform: 'neutral', logLevel: 'warning' });
}
writeFileSync(join(dist, 'cjs', 'package.json'), '{ "type": "commonjs" }\n');

execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
cpSync(join(dist, 'esm'), join(dist, 'cjs'), { recursive: true, filter: (src) => !src.endsWith('.js') });

mkdirSync(join(dist, 'browser'), { recursive: true });
const sizes = [];
for (const [name, external] of [['index', []], ['react', ['react']], ['server', []]]) {
  const outfile = join(dist, 'browser', `${name}.min.js`);
  await esbuild.build({ entryPoints: [join(root, 'src', `${name}.ts`)], outfile, bundle: true, minify: true, format: 'esm', target: 'es2020', external, logLevel: 'warning' });
  const bytes = readFileSync(outfile);
  sizes.push({ name, min: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length });
}
for (const { name, min, gzip } of sizes) {
  console.log(`bundle size: ${name === 'index' ? 'bellhop-client' : `bellhop-client/${name}`} ${min} B minified, ${gzip} B minified+gzipped`);
}
const main = sizes[0];
if (main.gzip > BUDGET_BYTES) {
  console.error(`bellhop-client is ${main.gzip} B minified+gzipped, over its ${BUDGET_BYTES} B budget`);
  process.exit(1);
}
