// What both walk-throughs start: `opsd start` on a fresh embedded store, with a handlers module.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

/**
 * Resolves with the URL of `opsd start` once it listens, and a `stop` that ends it and removes its
 * data folder. Its log goes to a pipe read for the URL; warnings and errors are printed.
 */
export async function startOpsd(env) {
  const dataDir = mkdtempSync(join(tmpdir(), 'opsd-example-'));
  const opsd = spawn(process.execPath, [CLI, 'start', '--port', '0'], {
    env: { ...process.env, ...env, OPSD_DATA_DIR: dataDir, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise((resolve, reject) => {
    let output = '';
    opsd.stdout.on('data', (chunk) => {
      output += chunk;
      for (const line of chunk.toString().split('\n')) {
        if (line.includes('"opsd listening"')) resolve(JSON.parse(line).url);
        else if (/"level":(40|50|60)/.test(line)) console.error(line);
      }
    });
    opsd.once('exit', (code) => reject(new Error(`opsd exited with ${code}:\n${output}`)));
  });
  return {
    url,
    async stop() {
      opsd.kill('SIGTERM');
      await new Promise((resolve) => opsd.once('exit', resolve));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
