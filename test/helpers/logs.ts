// Every log line of a test run goes to one folder: the in-process services' loggers (at
// debug) and the stdout of every service process a test starts. When the run ends, the
// global teardown fails it if any line holds an email address (see log-scan.ts).
import { appendFileSync, openSync } from 'node:fs';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { inject } from 'vitest';
import type { Config } from '../../src/config.js';
import { createLogger } from '../../src/main.js';

let serial = 0;

/** The service's own logger (with its address filter), writing into the run's log folder. */
export function testLogger(config: Config): Logger {
  const file = path.join(inject('logDir'), `${process.pid}.ndjson`);
  return createLogger({ ...config, logLevel: 'debug' }, pino.destination({ dest: file, append: true, sync: true }));
}

/** A file descriptor in the run's log folder, for a child process's stdout. */
export function childLogFd(name: string): number {
  serial += 1;
  return openSync(path.join(inject('logDir'), `${name}-${process.pid}-${serial}.ndjson`), 'a');
}

/** Output a test collected from a child process, kept with the run's logs. */
export function keepChildLog(name: string, output: string): void {
  appendFileSync(path.join(inject('logDir'), `${name}-${process.pid}.ndjson`), output);
}
