// The service compiled as the container image compiles it (scripts/image.sh compile: tsc, then
// the templates beside the output), into a folder of the run's own. Measuring the TypeScript
// source through tsx would add tsx's loader to every figure: about 70 MB of memory per process.
import { execFileSync } from 'node:child_process';
import { cpSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './lib.js';

/** Compiles into `dir` and returns the path of the compiled cli.js. */
export function buildService(dir: string): string {
  const dist = path.join(dir, 'dist');
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', dist],
    { cwd: ROOT, stdio: 'inherit' });
  cpSync(path.join(ROOT, 'templates'), path.join(dist, 'templates'), { recursive: true });
  // Packages resolve from the folders above a module: give the build the repository's.
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  return path.join(dist, 'src/cli.js');
}
