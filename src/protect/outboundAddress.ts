import { BlockList, isIP } from 'node:net';

/**
 * Address ranges `http.request` refuses to connect to unless allowed: loopback, private, shared
 * (CGNAT), link-local (with the 169.254.169.254 metadata service), unique-local, multicast,
 * reserved and unspecified. A caller able to submit operations could otherwise make opsd fetch a
 * service that only listens inside the host or the network, and read the answer in the result.
 */
const BLOCKED: [string, number, 'ipv4' | 'ipv6'][] = [
  ['0.0.0.0', 8, 'ipv4'],
  ['10.0.0.0', 8, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['127.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.0.0.0', 24, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['198.18.0.0', 15, 'ipv4'],
  ['224.0.0.0', 4, 'ipv4'],
  ['240.0.0.0', 4, 'ipv4'],
  ['::', 128, 'ipv6'],
  ['::1', 128, 'ipv6'],
  ['64:ff9b::', 96, 'ipv6'],
  ['fc00::', 7, 'ipv6'],
  ['fe80::', 10, 'ipv6'],
  ['ff00::', 8, 'ipv6'],
];

/**
 * What `http.request` may connect to. `allow` (setting `OPSD_HTTP_ALLOW`): host names, addresses
 * or CIDR ranges that are reachable even though they are in a refused range, e.g.
 * `localhost,127.0.0.1,10.1.0.0/16`. Pure: decides on names and addresses it is given.
 */
export class OutboundPolicy {
  readonly #blocked = new BlockList();
  readonly #allowed = new BlockList();
  readonly #allowedHosts = new Set<string>();

  constructor(allow: readonly string[] = []) {
    for (const [address, prefix, family] of BLOCKED) this.#blocked.addSubnet(address, prefix, family);
    for (const entry of allow.map((a) => a.trim().toLowerCase()).filter(Boolean)) {
      const [address, prefix] = entry.split('/');
      const family = isIP(address ?? '');
      if (family === 0) this.#allowedHosts.add(entry);
      else if (prefix === undefined) this.#allowed.addAddress(address as string, family === 4 ? 'ipv4' : 'ipv6');
      else this.#allowed.addSubnet(address as string, Number(prefix), family === 4 ? 'ipv4' : 'ipv6');
    }
  }

  /** From the `OPSD_HTTP_ALLOW` environment variable (comma-separated). */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): OutboundPolicy {
    return new OutboundPolicy((env.OPSD_HTTP_ALLOW ?? '').split(','));
  }

  /** Whether every connection to `hostname` is allowed whatever it resolves to (it is on the allow-list by name). */
  allowsHost(hostname: string): boolean {
    return this.#allowedHosts.has(hostname.toLowerCase().replace(/^\[|\]$/g, ''));
  }

  /** Why `address` (resolved, or written as an IP) may not be reached, or null when it may. */
  refusal(address: string): string | null {
    const family = isIP(address);
    if (family === 0) return `"${address}" is not an IP address`;
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (!this.#blocked.check(address, type) || this.#allowed.check(address, type)) return null;
    return `${address} is in a loopback, private, link-local or reserved range (allow it with OPSD_HTTP_ALLOW)`;
  }
}
