// Builds the pages the hub embeds (shared/src/http/console.rs) into dist/, which is committed so that `cargo build`
// needs no Node: the three page scripts (bundled with bellhop-client's sources, minified), the stylesheet, the HTML,
// and Swagger UI's prebuilt assets copied from the swagger-ui-dist package of package-lock.json.
//
// `node scripts/build.mjs --check` builds in memory and fails, naming the files, when dist/ differs: the test
// command runs it, so committed assets cannot drift from their sources.
import { readFileSync, readdirSync, mkdirSync, writeFileSync, rmSync, existsSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const check = process.argv.includes('--check');

/** dist-relative path → bytes */
const files = new Map();

const scripts = await esbuild.build({
  entryPoints: ['console', 'admin', 'docs'].map((name) => join(root, 'src', `${name}.ts`)),
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  write: false,
  outdir: dist,
  legalComments: 'none',
  logLevel: 'warning',
});
const styles = await esbuild.build({
  entryPoints: [join(root, 'src', 'app.css')],
  bundle: true,
  minify: true,
  write: false,
  outdir: dist,
  logLevel: 'warning',
});
for (const output of [...scripts.outputFiles, ...styles.outputFiles]) {
  files.set(relative(dist, output.path), Buffer.from(output.contents));
}
for (const page of readdirSync(join(root, 'pages'))) {
  files.set(page, readFileSync(join(root, 'pages', page)));
}

// Swagger UI ships minified; only its source-map comments go, so a browser never asks for a map this hub lacks.
const swagger = join(root, 'node_modules', 'swagger-ui-dist');
if (!existsSync(swagger)) {
  console.error('node_modules/swagger-ui-dist is missing: run `npm ci` in clients/console first');
  process.exit(1);
}
const version = JSON.parse(readFileSync(join(swagger, 'package.json'), 'utf8')).version;
const stripMap = (text) => text.replace(/\n?\/[/*]# sourceMappingURL=\S+(?: \*\/)?\s*$/, '\n');
files.set('vendor/swagger-ui-bundle.js', Buffer.from(stripMap(readFileSync(join(swagger, 'swagger-ui-bundle.js'), 'utf8'))));
files.set('vendor/swagger-ui.css', Buffer.from(stripMap(readFileSync(join(swagger, 'swagger-ui.css'), 'utf8'))));
files.set(
  'vendor/swagger-ui.LICENSE.txt',
  Buffer.from(
    `swagger-ui-dist ${version}, from the npm registry (clients/console/package-lock.json).\n\n` +
      readFileSync(join(swagger, 'LICENSE'), 'utf8') +
      '\n' +
      readFileSync(join(swagger, 'NOTICE'), 'utf8') +
      '\n' +
      readFileSync(join(swagger, 'swagger-ui-bundle.js.LICENSE.txt'), 'utf8'),
  ),
);

function listDist(dir = dist) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? listDist(path) : [relative(dist, path)];
  });
}

if (check) {
  const drifted = [];
  for (const [name, bytes] of files) {
    const path = join(dist, name);
    if (!existsSync(path) || !readFileSync(path).equals(bytes)) drifted.push(name);
  }
  for (const name of listDist()) if (!files.has(name)) drifted.push(`${name} (not built any more)`);
  if (drifted.length) {
    console.error(`clients/console/dist differs from its sources: ${drifted.join(', ')}.\nRun \`npm run build\` in clients/console and commit dist/.`);
    process.exit(1);
  }
  console.log(`clients/console/dist matches its sources (${files.size} files)`);
} else {
  rmSync(dist, { recursive: true, force: true });
  for (const [name, bytes] of files) {
    mkdirSync(dirname(join(dist, name)), { recursive: true });
    writeFileSync(join(dist, name), bytes);
  }
}

let total = 0;
let gzipped = 0;
for (const [name, bytes] of [...files].sort()) {
  const packed = gzipSync(bytes, { level: 9 }).length;
  total += bytes.length;
  gzipped += packed;
  if (!check) console.log(`${name.padEnd(32)} ${(bytes.length / 1024).toFixed(1).padStart(8)} kB  ${(packed / 1024).toFixed(1).padStart(7)} kB gzip`);
}
console.log(`embedded in the hub: ${(total / 1024).toFixed(1)} kB (${(gzipped / 1024).toFixed(1)} kB gzipped)`);
