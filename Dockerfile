# syntax=docker/dockerfile:1
# assent: compiled JavaScript on the current Node.js LTS, production dependencies only, run
# as a non-root user. The steps are in scripts/image.sh, which test/image.test.ts runs
# outside Docker on every `npm test`; scripts/container-test.sh builds and runs the image
# with a real engine.
ARG NODE_VERSION=26
# Where no registry is reachable (our CI), scripts/base-image.sh makes a local stand-in and
# the build names it here; everywhere else this pulls the official image.
ARG BASE_IMAGE=node:${NODE_VERSION}-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/image.sh ./scripts/
RUN sh scripts/image.sh build-deps
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
RUN sh scripts/image.sh compile

FROM ${BASE_IMAGE} AS runtime
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/image.sh ./scripts/
RUN sh scripts/image.sh runtime-deps && rm -rf scripts
COPY --from=build /app/dist ./dist
COPY bin ./bin
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT || 3000}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# `assent` alone serves HTTP and runs the mail workers; `serve` or `worker` runs one role.
ENTRYPOINT ["node", "bin/assent.js"]
