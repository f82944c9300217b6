// What every benchmark part shares: child processes we start and always end, the peak
// memory of a process, and waiting on a condition with a deadline.
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const children = new Set<ChildProcess>();

/** Ends every child still running: called on the way out, whatever happened. */
export function killChildren(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

export interface Child {
  process: ChildProcess;
  pid: number;
  /** The first message the child sends over IPC that passes `match`. */
  message<T>(match: (message: T) => boolean, timeoutMs?: number): Promise<T>;
  /** SIGTERM, then SIGKILL if it has not gone within the grace. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * A Node child running TypeScript through tsx (or `javascript` as it is), with an IPC
 * channel and its output in a log file: piping it here would cost this process CPU the run needs.
 */
export function startChild(script: string, args: string[], options: {
  env?: Record<string, string>; log: string; nodeOptions?: string[]; javascript?: boolean;
}): Child {
  const out = openSync(options.log, 'a');
  const loader = options.javascript ? [] : ['--import', 'tsx'];
  const child = spawn(process.execPath, [...(options.nodeOptions ?? []), ...loader, script, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', out, out, 'ipc'],
  });
  children.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => { children.delete(child); resolve(); }));
  return {
    process: child,
    pid: child.pid!,
    message<T>(match: (message: T) => boolean, timeoutMs = 120_000) {
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => { cleanup(); reject(new Error(`${path.basename(script)}: no answer in ${timeoutMs} ms (see ${options.log})`)); }, timeoutMs);
        const onMessage = (message: unknown) => { if (match(message as T)) { cleanup(); resolve(message as T); } };
        const onExit = (code: number | null) => { cleanup(); reject(new Error(`${path.basename(script)} exited (${code}); see ${options.log}`)); };
        const cleanup = () => { clearTimeout(timer); child.off('message', onMessage); child.off('exit', onExit); };
        child.on('message', onMessage);
        child.once('exit', onExit);
      });
    },
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Peak resident memory of a live process in bytes (the kernel's high-water mark, VmHWM). */
export function peakRss(pid: number): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmHWM for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/** Starts the high-water mark afresh, so that the next peakRss covers only what follows. */
export function resetPeakRss(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

export function currentRss(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : 0;
}

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux that matters

/** Seconds of CPU a process has used, with that of its children that have ended (/proc/<pid>/stat). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime, stime, cutime, cstime: fields 14 to 17 of proc(5), counted here after the name
  return (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / TICKS_PER_SECOND;
}

/** CPU seconds of a process and all its descendants, living or ended: a PostgreSQL server and its backends. */
export function treeCpuSeconds(pid: number): number {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const parent = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
      children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  // A child's own figure holds its ended children; its living ones are added by walking on.
  const walk = (id: number): number => (children.get(id) ?? []).reduce((sum, child) => {
    try {
      return sum + cpuSeconds(child) + walk(child);
    } catch {
      return sum; // ended since the listing: its time is in its parent's figure now
    }
  }, 0);
  return cpuSeconds(pid) + walk(pid);
}

/** The PostgreSQL server's pid, from the lock file in its data folder. */
export function postmasterPid(dataDir: string): number {
  return Number(readFileSync(path.join(dataDir, 'postgres/postmaster.pid'), 'utf8').split('\n')[0]);
}

/** CPU used by each of some processes while `task` ran, in milliseconds per unit of work it reports. */
export async function cpuPer<T extends { units: number }>(pids: Record<string, { pid: number; tree?: boolean }>, task: () => Promise<T>):
  Promise<T & { cpuMs: Record<string, number> }> {
  const read = () => Object.fromEntries(Object.entries(pids).map(([name, p]) => [name, p.tree ? treeCpuSeconds(p.pid) : cpuSeconds(p.pid)]));
  const before = read();
  const result = await task();
  const after = read();
  const cpuMs = Object.fromEntries(Object.keys(pids).map((name) => [name, (1000 * (after[name]! - before[name]!)) / Math.max(1, result.units)]));
  return { ...result, cpuMs };
}

export async function waitUntil(what: string, check: () => Promise<boolean>, options: { timeoutMs: number; everyMs?: number }): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, options.everyMs ?? 100));
  }
}

export const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
export const fixed = (value: number, digits = 0) => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
