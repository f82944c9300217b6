// Processes as the kernel lists them (/proc, Linux): which PostgreSQL processes run on a data
// folder, so tests can freeze them (SIGSTOP) or check that none is left behind.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  args: string[];
}

async function processes(): Promise<ProcessInfo[]> {
  const found: ProcessInfo[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    // A process may end between readdir and these reads: skip it.
    const [stat, cmdline] = await Promise.all([
      readFile(`/proc/${entry}/stat`, 'utf8').catch(() => ''),
      readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => ''),
    ]);
    // The command name in parentheses may hold spaces; the fields after it are fixed.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (stat && cmdline) found.push({ pid: Number(entry), ppid, args: cmdline.split('\0').filter(Boolean) });
  }
  return found;
}

/**
 * The PostgreSQL processes of an embedded server under `dataDir`: each postmaster started with
 * `-D <dataDir>/postgres`, and its children (backends, checkpointer, WAL writer …), whose
 * command lines do not name the folder.
 */
export async function postgresProcessesOf(dataDir: string): Promise<{ postmasters: ProcessInfo[]; children: number[] }> {
  const databaseDir = path.resolve(dataDir, 'postgres');
  const all = await processes();
  const postmasters = all.filter((p) => p.args.some((arg, i) => arg === databaseDir && p.args[i - 1] === '-D'));
  const children = all.filter((p) => postmasters.some((postmaster) => postmaster.pid === p.ppid)).map((p) => p.pid);
  return { postmasters, children };
}

/** Every PostgreSQL process of `dataDir`, postmasters first. */
export async function allPostgresProcessesOf(dataDir: string): Promise<number[]> {
  const { postmasters, children } = await postgresProcessesOf(dataDir);
  return [...postmasters.map((p) => p.pid), ...children];
}

async function stopped(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
}

async function stop(pids: number[]): Promise<void> {
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
  // kill() returns before the signal has taken effect
  for (const pid of pids) while (!(await stopped(pid))) await new Promise((resolve) => setTimeout(resolve, 5));
}

/**
 * Freezes the embedded PostgreSQL of `dataDir` (SIGSTOP): its sockets stay open, nothing
 * answers. The postmaster first, so that no backend is forked after the children are listed.
 * Returns the frozen processes, for thaw().
 */
export async function freezePostgres(dataDir: string): Promise<number[]> {
  const postmasters = (await postgresProcessesOf(dataDir)).postmasters.map((p) => p.pid);
  await stop(postmasters);
  const { children } = await postgresProcessesOf(dataDir);
  await stop(children);
  return [...postmasters, ...children];
}

/** SIGCONT to what freezePostgres stopped: its children first, then the postmaster. */
export function thaw(pids: number[]): void {
  for (const pid of [...pids].reverse()) process.kill(pid, 'SIGCONT');
}
