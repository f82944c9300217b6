// What every benchmark part shares: child processes we start and always end, the peak
// memory of a process, and waiting on a condition with a deadline.
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
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

export async function waitUntil(what: string, check: () => Promise<boolean>, options: { timeoutMs: number; everyMs?: number }): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, options.everyMs ?? 100));
  }
}

export const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
export const fixed = (value: number, digits = 0) => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
