import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { uniqueId, waitFor } from './support/helpers.js';
import { runOpsd, spawnOpsd, startOpsd, type OpsdProcess } from './support/opsdProcess.js';
import { createServerDatabase } from './support/serverDatabase.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type Need = 'open' | 'submit' | 'read' | 'admin';

/**
 * Who may call what: the table of the README ("API keys"), route by route. Every route the api's
 * OpenAPI document lists must be in it, so a new route cannot ship without a decision.
 */
const ROUTE_TABLE: Record<string, Need> = {
  'GET /health/live': 'open',
  'GET /health/ready': 'open',
  'GET /health': 'open',
  'GET /metrics': 'open',
  'POST /v1/webhooks/{source}': 'open',
  'POST /v1/operations': 'submit',
  'POST /v1/operations/batch': 'submit',
  'GET /v1/operations': 'read',
  'GET /v1/operations/{id}': 'read',
  'GET /v1/operations/{id}/events': 'read',
  'GET /openapi.json': 'read',
  'GET /docs': 'read',
  'POST /v1/operations/{id}/cancel': 'admin',
  'POST /v1/operations/{id}/retry': 'admin',
  'POST /v1/admin/types/{type}/pause': 'admin',
  'POST /v1/admin/types/{type}/resume': 'admin',
  'POST /v1/admin/resources/{name}/pause': 'admin',
  'POST /v1/admin/resources/{name}/resume': 'admin',
  'GET /v1/admin/resources': 'admin',
  'GET /v1/admin/stats': 'admin',
  'POST /v1/subscriptions': 'admin',
  'GET /v1/subscriptions': 'admin',
  'GET /v1/subscriptions/{id}': 'admin',
  'DELETE /v1/subscriptions/{id}': 'admin',
  'GET /v1/subscriptions/{id}/deliveries': 'admin',
};

const SAMPLE = { id: '00000000-0000-4000-8000-000000000000', type: 'demo.echo', name: 'nothing', source: 'github' };
const bodyOf: Record<string, unknown> = {
  'POST /v1/operations': { type: 'demo.echo', external_id: 'x', payload: {} },
  'POST /v1/operations/batch': { operations: [] },
  'POST /v1/subscriptions': { url: 'http://127.0.0.1:9/', events: ['operation.completed'] },
  'POST /v1/webhooks/{source}': {},
};

async function call(base: string, route: string, key?: string) {
  const [method, template] = route.split(' ') as [string, string];
  const path = template.replace(/\{(\w+)\}/g, (_, name: keyof typeof SAMPLE) => SAMPLE[name]);
  const body = bodyOf[route] ?? (method === 'POST' ? {} : undefined);
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    redirect: 'manual',
  });
  const text = await response.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { error?: { code: string } }).error?.code;
  } catch {
    code = undefined;
  }
  return { status: response.status, code, headers: response.headers };
}

describe('API keys', { skip: process.env.DATABASE_URL ? false : 'DATABASE_URL is not set: api, intake and worker (where keys are required by default) run on a PostgreSQL server' }, () => {
  let database: { url: string; drop(): Promise<void> };
  const keys: Record<'submit' | 'read' | 'admin' | 'all', { token: string; id: string; secret: string }> = {} as never;
  const processes: OpsdProcess[] = [];
  const env = () => ({ DATABASE_URL: database.url, REDIS_URL: '', OPSD_AUTH: '', OPSD_AUTH_MAX_FAILURES: '1000' });

  before(async () => {
    database = await createServerDatabase(process.env.DATABASE_URL as string);
    for (const [name, scopes] of [['submit', 'submit'], ['read', 'read'], ['admin', 'admin'], ['all', 'submit,read,admin']] as const) {
      const created = await runOpsd(['keys', 'create', '--scopes', scopes, '--name', `${name} key`], { DATABASE_URL: database.url });
      assert.equal(created.code, 0, created.stderr);
      const token = created.stdout.trim();
      assert.match(token, /^opsd_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
      // The secret is base64url, so it may itself hold '_': cut it at the id, never split on '_'.
      const id = token.slice('opsd_'.length, 'opsd_'.length + 16);
      keys[name] = { token, id, secret: token.slice(`opsd_${id}_`.length) };
    }
  });
  after(async () => {
    for (const p of processes) p.child.kill('SIGTERM');
    await Promise.all(processes.map((p) => p.exited));
    await database?.drop();
  });

  it('opsd keys list shows ids, names and scopes, never a key or its hash', async () => {
    const listed = await runOpsd(['keys', 'list'], { DATABASE_URL: database.url });
    assert.equal(listed.code, 0, listed.stderr);
    for (const key of Object.values(keys)) {
      assert.ok(listed.stdout.includes(key.id));
      assert.ok(!listed.stdout.includes(key.secret), 'the secret is never printed again');
    }
    assert.match(listed.stdout, /submit key\tsubmit\t.*\tactive/);
    assert.match(listed.stdout, /all key\tsubmit,read,admin\t/);
    const bad = await runOpsd(['keys', 'create', '--scopes', 'submit,everything'], { DATABASE_URL: database.url });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /scopes must be/);
  });

  it('opsd api requires keys by default: every route × {no key, wrong key, key without the scope, right key} answers as the table says', async () => {
    const api = await spawnOpsd(['api', '--port', '0'], env());
    processes.push(api);
    assert.match(api.output(), /"auth":"required/);
    const documented = await fetch(`${api.url}/openapi.json`, { headers: { authorization: `Bearer ${keys.read.token}` } });
    const paths = (await documented.json()) as { paths: Record<string, Record<string, unknown>> };
    for (const [path, operations] of Object.entries(paths.paths)) {
      for (const method of Object.keys(operations)) assert.ok(`${method.toUpperCase()} ${path}` in ROUTE_TABLE, `${method.toUpperCase()} ${path} is not in the route table`);
    }
    const wrongKey = `opsd_${keys.all.id}_${'A'.repeat(43)}`;
    for (const [route, need] of Object.entries(ROUTE_TABLE)) {
      const anonymous = await call(api.url, route);
      const wrong = await call(api.url, route, wrongKey);
      const right = await call(api.url, route, need === 'open' ? undefined : keys[need].token);
      const everything = await call(api.url, route, keys.all.token);
      if (need === 'open') {
        for (const reply of [anonymous, wrong, right]) assert.ok(reply.status !== 401 && reply.status !== 403, `${route} is open, got ${reply.status}`);
        continue;
      }
      assert.equal(anonymous.status, 401, `${route} without a key`);
      assert.equal(anonymous.code, 'OPSD_ERR_UNAUTHENTICATED');
      assert.equal(anonymous.headers.get('www-authenticate'), 'Bearer realm="opsd"');
      assert.equal(wrong.status, 401, `${route} with a wrong key`);
      for (const other of (['submit', 'read', 'admin'] as const).filter((s) => s !== need)) {
        const lacking = await call(api.url, route, keys[other].token);
        assert.equal(lacking.status, 403, `${route} with a ${other} key`);
        assert.equal(lacking.code, 'OPSD_ERR_FORBIDDEN');
      }
      for (const reply of [right, everything]) assert.ok(reply.status !== 401 && reply.status !== 403 && reply.status < 500, `${route} with the right key got ${reply.status} ${reply.code}`);
    }
    // Failed attempts are logged without the key.
    assert.match(api.output(), /request with a bad API key refused/);
    assert.ok(!api.output().includes('A'.repeat(43)), 'the bad key never reaches the log');
  });

  it('the intake and a worker ask for keys too: submit on the intake, read on a worker /stats; health and metrics stay open', async () => {
    const intake = await spawnOpsd(['intake', '--port', '0'], env());
    const worker = await spawnOpsd(['worker', '--health-port', '0'], env());
    processes.push(intake, worker);
    const submit = { type: 'demo.echo', external_id: uniqueId('intake'), payload: {} };
    const post = (key?: string) =>
      fetch(`${intake.url}/v1/operations`, { method: 'POST', body: JSON.stringify(submit), headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) } });
    assert.equal((await post()).status, 401);
    assert.equal((await post(keys.read.token)).status, 403);
    assert.equal((await post(keys.submit.token)).status, 202);
    for (const path of ['/health/live', '/health/ready', '/metrics']) assert.equal((await fetch(`${intake.url}${path}`)).status, 200, path);
    const stats = (key?: string) => fetch(`${worker.url}/stats`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
    assert.equal((await stats()).status, 401);
    assert.equal((await stats(keys.submit.token)).status, 403);
    assert.equal((await stats(keys.read.token)).status, 200);
    for (const path of ['/health/live', '/health/ready', '/metrics']) assert.equal((await fetch(`${worker.url}${path}`)).status, 200, path);
  });

  it('a revoked key is refused by a running api within the cache time (5 s)', async () => {
    const created = await runOpsd(['keys', 'create', '--scopes', 'read'], { DATABASE_URL: database.url });
    const token = created.stdout.trim();
    const api = await spawnOpsd(['api', '--port', '0'], env());
    processes.push(api);
    const read = () => fetch(`${api.url}/v1/operations`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal((await read()).status, 200);
    const revoked = await runOpsd(['keys', 'revoke', token.split('_')[1] as string], { DATABASE_URL: database.url });
    assert.equal(revoked.code, 0, revoked.stderr);
    const started = Date.now();
    await waitFor('the revoked key to be refused', async () => (await read()).status === 401, { timeoutMs: 10_000, intervalMs: 200 });
    assert.ok(Date.now() - started < 7000);
    assert.equal((await runOpsd(['keys', 'revoke', token.split('_')[1] as string], { DATABASE_URL: database.url })).code, 1, 'revoking twice says there is no such active key');
  });

  it('a burst of bad keys from one address gets 429 with Retry-After, and nothing else from it passes meanwhile', async () => {
    const api = await spawnOpsd(['api', '--port', '0'], { ...env(), OPSD_AUTH_MAX_FAILURES: '5' });
    processes.push(api);
    const read = (key: string) => fetch(`${api.url}/v1/operations`, { headers: { authorization: `Bearer ${key}` } });
    for (let i = 0; i < 5; i += 1) assert.equal((await read(`opsd_${'0'.repeat(16)}_${'B'.repeat(43)}`)).status, 401);
    const blocked = await read('not-even-a-key');
    assert.equal(blocked.status, 429);
    assert.ok(Number(blocked.headers.get('retry-after')) > 0);
    assert.equal(((await blocked.json()) as { error: { code: string } }).error.code, 'OPSD_ERR_TOO_MANY_AUTH_FAILURES');
    assert.equal((await read(keys.read.token)).status, 429);
    assert.equal((await fetch(`${api.url}/health/live`)).status, 200, 'probes are never refused');
  });
});

describe('opsd start on the embedded store', () => {
  it('stays open by default, and says so when it starts', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'opsd-auth-'));
    const opsd = await startOpsd({ OPSD_DATA_DIR: dataDir, DATABASE_URL: '', REDIS_URL: '', OPSD_AUTH: '' });
    try {
      assert.match(opsd.output(), /"auth":"open: no API key exists yet/);
      const reply = await fetch(`${opsd.url}/v1/operations`, { method: 'POST', body: JSON.stringify({ type: 'demo.echo', external_id: uniqueId('open'), payload: {} }), headers: { 'content-type': 'application/json' } });
      assert.equal(reply.status, 202);
    } finally {
      opsd.child.kill('SIGTERM');
      await opsd.exited;
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('needs keys once one exists in its data folder', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'opsd-auth-'));
    const created = await runOpsd(['keys', 'create', '--scopes', 'submit'], { OPSD_DATA_DIR: dataDir, DATABASE_URL: '' });
    assert.equal(created.code, 0, created.stderr);
    const opsd = await startOpsd({ OPSD_DATA_DIR: dataDir, DATABASE_URL: '', REDIS_URL: '', OPSD_AUTH: '' });
    try {
      assert.match(opsd.output(), /"auth":"required: API keys exist/);
      const post = (key?: string) =>
        fetch(`${opsd.url}/v1/operations`, { method: 'POST', body: JSON.stringify({ type: 'demo.echo', external_id: uniqueId('keyed'), payload: {} }), headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) } });
      assert.equal((await post()).status, 401);
      assert.equal((await post(created.stdout.trim())).status, 202);
    } finally {
      opsd.child.kill('SIGTERM');
      await opsd.exited;
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
