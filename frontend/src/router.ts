/**
 * History-API router. The backend answers every non-API path with index.html (SPA fallback), so
 * a reload of /annotate/3/17 lands back on the same image.
 */
export type Cleanup = () => void;
/**
 * A page that outlives navigations between its own paths (the annotate session across images):
 * when the next path matches a route of the same page function, `update` gets its params instead of
 * the page being rebuilt, and answers false when it wants a rebuild after all (another project).
 */
export interface KeptPage {
  cleanup: Cleanup;
  update(params: Record<string, string>): boolean;
}
type Mounted = Cleanup | KeptPage | void;
export type Page = (root: HTMLElement, params: Record<string, string>) => Mounted | Promise<Mounted>;

interface Route {
  pattern: RegExp;
  keys: string[];
  page: Page;
}

const routes: Route[] = [];
let mounted: { page: Page; done: Mounted } | null = null;
let root: HTMLElement;
let renders = 0;

export function route(path: string, page: Page): void {
  const keys: string[] = [];
  const pattern = new RegExp(
    "^" + path.replace(/:(\w+)/g, (_, key: string) => (keys.push(key), "([^/]+)")) + "/?$",
  );
  routes.push({ pattern, keys, page });
}

export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  void render();
}

/** Each page renders into a fresh root element (same id, nothing left of the previous page): a page
 * still loading when the user navigates on fills a detached element, and its cleanup runs as soon
 * as it returns. A kept page (`KeptPage`) is updated in place instead, when the path is its own. */
async function render(): Promise<void> {
  const current = ++renders;
  const path = location.pathname;
  const found = match(path);
  const kept = mounted?.done;
  if (found && kept && typeof kept === "object" && mounted!.page === found.route.page && kept.update(found.params)) return;
  dispose(mounted?.done);
  mounted = null;
  const fresh = document.createElement(root.tagName);
  fresh.id = root.id;
  root.replaceWith(fresh);
  root = fresh;
  if (!found) return navigate("/", true);
  const done = await found.route.page(fresh, found.params);
  if (current === renders) mounted = { page: found.route.page, done };
  else dispose(done);
}

function match(path: string): { route: Route; params: Record<string, string> } | null {
  for (const r of routes) {
    const m = r.pattern.exec(path);
    if (m) return { route: r, params: Object.fromEntries(r.keys.map((k, i) => [k, decodeURIComponent(m[i + 1])])) };
  }
  return null;
}

function dispose(done: Mounted | undefined): void {
  if (typeof done === "function") done();
  else if (done) done.cleanup();
}

export function start(element: HTMLElement): void {
  root = element;
  window.addEventListener("popstate", () => void render());
  void render();
}
