// The service compiled as the container image compiles it (scripts/image.sh compile: tsc, then
// the templates beside the output), into a folder of the run's own. Measuring the TypeScript
// source through tsx would add tsx's loader to every figure: about 70 MB of memory per process.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './lib.js';

/** Compiles the sources under `root` (this checkout unless told) into `dir`; returns the path of the compiled cli.js. */
export function buildService(dir: string, root = ROOT): string {
  const dist = path.join(dir, 'dist');
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json'), '--outDir', dist],
    { cwd: root, stdio: 'inherit' });
  cpSync(path.join(root, 'templates'), path.join(dist, 'templates'), { recursive: true });
  // Packages resolve from the folders above a module: give the build the repository's.
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  return path.join(dist, 'src/cli.js');
}

/**
 * The service as it was at `commit` (sources, migrations, templates from git), compiled into
 * `dir` against today's node_modules: the "before" of a before-and-after measurement.
 */
export function buildServiceAt(commit: string, dir: string): string {
  const source = path.join(dir, 'source');
  mkdirSync(source, { recursive: true });
  const archive = execFileSync('git', ['archive', '--format=tar', commit, 'src', 'migrations', 'templates', 'package.json', 'tsconfig.json', 'tsconfig.build.json'], { cwd: ROOT, maxBuffer: 256 * 1024 * 1024 });
  execFileSync('tar', ['-x', '-C', source], { input: archive });
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(source, 'node_modules'), 'dir');
  return buildService(dir, source);
}
