/** Methods served on a path, for a 405 with `Allow`; patterns use `:name` for one path segment. */
export class RouteTable {
  readonly #routes: { pattern: RegExp; method: string }[] = [];

  add(url: string, method: string): void {
    const pattern = new RegExp(`^${url.split('/').map((part) => (part.startsWith(':') ? '[^/]+' : escape(part))).join('/')}$`);
    this.#routes.push({ pattern, method: method.toUpperCase() });
  }

  /** The methods that would be served on `path`, sorted; empty when no route has it. */
  allowed(path: string): string[] {
    return [...new Set(this.#routes.filter((r) => r.pattern.test(path)).map((r) => r.method))].sort();
  }
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
