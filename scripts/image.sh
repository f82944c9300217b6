#!/bin/sh
# The container image's build steps, one stage per argument. The Dockerfile runs them, and
# test/image.test.ts runs the same script outside Docker (no engine there), so every step
# the image takes is exercised by `npm test`.
#
#   build-deps    in the build stage: the production dependencies plus the compiler and the
#                 type packages, from the lockfile (npm ci)
#   compile       in the build stage: TypeScript to dist/, templates beside it
#   runtime-deps  in the runtime stage: production dependencies only (npm ci --omit=dev)
#
# Each install first narrows package.json to what its stage needs. The test tools are never
# installed in the image, and neither is the embedded PostgreSQL (production requires
# DATABASE_URL) nor tsx (the image runs compiled JavaScript). Narrowing also keeps `npm ci`
# working when the lockfile lacks other platforms' optional packages of a test tool (rollup's,
# when the lockfile was written against a registry mirror without them).
set -eu

narrow() {
  node -e '
    const fs = require("fs");
    const pkg = JSON.parse(fs.readFileSync("package.json", "utf8"));
    const keepDev = process.argv[1] === "build" ? (name) => name === "typescript" || name.startsWith("@types/") : () => false;
    for (const name of ["embedded-postgres", "tsx"]) delete pkg.dependencies[name];
    pkg.devDependencies = Object.fromEntries(Object.entries(pkg.devDependencies ?? {}).filter(([name]) => keepDev(name)));
    delete pkg.allowScripts;
    fs.writeFileSync("package.json", JSON.stringify(pkg, null, 2) + "\n");
  ' "$1"
}

case "${1:-}" in
  build-deps)
    narrow build
    npm ci --no-audit --no-fund
    ;;
  compile)
    npx tsc -p tsconfig.build.json
    cp -R templates dist/templates
    ;;
  runtime-deps)
    narrow runtime
    npm ci --omit=dev --no-audit --no-fund
    npm cache clean --force 2>/dev/null || true
    ;;
  *)
    echo "usage: scripts/image.sh build-deps|compile|runtime-deps" >&2
    exit 2
    ;;
esac
