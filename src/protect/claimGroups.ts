import type { ResourceDefinition } from './resourcePolicy.js';

/**
 * Types a worker claims together. `free` types go through nothing shared: their claim is the plain
 * one, and the end of one may start the next on its key in the same statement. Every other group
 * locks what it shares (its resource's row, its type's cap row) for its claim.
 */
export type ClaimGroup =
  | { kind: 'free'; types: string[] }
  | {
      kind: 'limited';
      /** Names the group in logs and in the worker's own wait bookkeeping. */
      name: string;
      types: string[];
      resource: ResourceDefinition | null;
      /** Every type that goes through `resource`: all of them count against its slots. */
      resourceTypes: string[];
      /** A cluster-wide cap on the group's one type. */
      typeCap: { type: string; limit: number } | null;
    };

/**
 * The groups for `types`: one of every type free of limits; one per resource for its types without
 * a cap of their own; one per capped type (with its resource, if it has one).
 */
export function claimGroups(
  types: readonly string[],
  resourceOf: (type: string) => ResourceDefinition | null,
  typeCaps: Readonly<Record<string, number>>,
): ClaimGroup[] {
  const free: string[] = [];
  const byResource = new Map<string, { resource: ResourceDefinition; types: string[] }>();
  const capped: string[] = [];
  for (const type of types) {
    const resource = resourceOf(type);
    if (typeCaps[type] !== undefined) capped.push(type);
    else if (resource) {
      const entry = byResource.get(resource.name) ?? { resource, types: [] };
      entry.types.push(type);
      byResource.set(resource.name, entry);
    } else free.push(type);
  }
  const typesOf = (resource: ResourceDefinition) => types.filter((t) => resourceOf(t)?.name === resource.name);
  const groups: ClaimGroup[] = [];
  if (free.length > 0) groups.push({ kind: 'free', types: free });
  for (const { resource, types: grouped } of byResource.values()) {
    groups.push({ kind: 'limited', name: `resource:${resource.name}`, types: grouped, resource, resourceTypes: typesOf(resource), typeCap: null });
  }
  for (const type of capped) {
    const resource = resourceOf(type);
    groups.push({
      kind: 'limited',
      name: `type:${type}`,
      types: [type],
      resource,
      resourceTypes: resource ? typesOf(resource) : [],
      typeCap: { type, limit: typeCaps[type] as number },
    });
  }
  return groups;
}
