import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BUILTIN_OPERATIONS } from './builtinOperations.js';
import { isOperationDefinition, type OperationDefinition } from './defineOperation.js';
import { HandlerRegistry } from './handlerRegistry.js';
import { isResourceDefinition } from '../protect/resourcePolicy.js';
import { isWebhookSource } from '../webhooks/webhookSource.js';

/**
 * The registry of a process: the built-in types plus every definition exported by the module at
 * `handlersPath` (default export: one definition or an array; named exports: definitions), and
 * the resources it exports (made with `defineResource`, alone or in arrays, under any name).
 */
export async function loadHandlers(handlersPath: string | undefined): Promise<HandlerRegistry> {
  const registry = new HandlerRegistry();
  for (const definition of BUILTIN_OPERATIONS) registry.register(definition);
  if (!handlersPath) return registry;

  const absolute = resolve(handlersPath);
  if (!existsSync(absolute)) throw new Error(`OPSD_HANDLERS: no such file ${absolute}`);
  const module = (await import(pathToFileURL(absolute).href)) as Record<string, unknown>;
  const exported = Object.values(module).flatMap((value) => (Array.isArray(value) ? value : [value]));
  const definitions = exported.filter(isOperationDefinition) as OperationDefinition[];
  if (definitions.length === 0) {
    throw new Error(`OPSD_HANDLERS: ${absolute} exports no operation defined with defineOperation()`);
  }
  for (const definition of new Set(definitions)) registry.register(definition as OperationDefinition<never, unknown>);
  for (const resource of new Set(exported.filter(isResourceDefinition))) registry.registerResource(resource);
  registry.checkResources();
  for (const source of new Set(exported.filter(isWebhookSource))) registry.registerWebhookSource(source);
  return registry;
}
