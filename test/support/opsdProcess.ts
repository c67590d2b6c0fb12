import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** A child process running the built `opsd` command, with its output kept for diagnosis. */
export interface OpsdProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function ensureBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` (npm test does it first)`);
}

/** Runs `opsd <args>` to completion. */
export async function runOpsd(args: string[], env: Record<string, string | undefined> = {}) {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  return { code, stdout, stderr };
}

/** The `url` (or, for a worker, `health_url`) of the "opsd listening" log line, once it is printed. */
export function listeningUrl(output: string): string | null {
  for (const line of output.split('\n')) {
    if (!line.includes('"opsd listening"')) continue;
    const entry = JSON.parse(line) as { url?: string | null; health_url?: string | null };
    return entry.url ?? entry.health_url ?? null;
  }
  return null;
}

/** Starts `opsd start` on a free port and resolves once it listens. */
export function startOpsd(env: Record<string, string | undefined>, args: string[] = []): Promise<OpsdProcess> {
  return spawnOpsd(['start', '--port', '0', ...args], env);
}

/**
 * Spawns `opsd <args>` and resolves once it logs "opsd listening" (url: its API, or a worker's
 * health server). With `waitFor: null` it resolves at once (a cluster supervisor logs no URL).
 */
export async function spawnOpsd(
  args: string[],
  env: Record<string, string | undefined>,
  options: { waitFor?: 'listening' | null } = {},
): Promise<OpsdProcess> {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, ...args], {
    // Open unless a test asks for keys (OPSD_AUTH=required): most tests are about something else.
    env: { ...process.env, LOG_LEVEL: 'info', OPSD_AUTH: 'off', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  if (options.waitFor === null) return { child, url: '', output: () => output, exited };
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const ready = listeningUrl(output);
      if (ready) {
        clearInterval(timer);
        resolve(ready);
      } else if (Date.now() - started > 30_000) {
        clearInterval(timer);
        reject(new Error(`opsd ${args[0]} did not start within 30 s:\n${output}`));
      }
    }, 20);
    const started = Date.now();
    void exited.then(({ code }) => {
      clearInterval(timer);
      reject(new Error(`opsd ${args[0]} exited with ${code} before listening:\n${output}`));
    });
  });
  return { child, url, output: () => output, exited };
}

/** JSON over HTTP to a child process on loopback. */
export async function http<T = unknown>(url: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; body: T }> {
  const response = await fetch(url, {
    method: init.method ?? 'GET',
    ...(init.body !== undefined ? { body: JSON.stringify(init.body), headers: { 'content-type': 'application/json' } } : {}),
  });
  return { status: response.status, body: (await response.json()) as T };
}
