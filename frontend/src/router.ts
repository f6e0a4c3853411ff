/**
 * History-API router. The backend answers every non-API path with index.html (SPA fallback), so
 * a reload of /annotate/3/17 lands back on the same image.
 */
export type Cleanup = () => void;
export type Page = (root: HTMLElement, params: Record<string, string>) => Cleanup | void | Promise<Cleanup | void>;

interface Route {
  pattern: RegExp;
  keys: string[];
  page: Page;
}

const routes: Route[] = [];
let cleanup: Cleanup | void;
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
 * as it returns. */
async function render(): Promise<void> {
  const current = ++renders;
  if (cleanup) cleanup();
  cleanup = undefined;
  const fresh = document.createElement(root.tagName);
  fresh.id = root.id;
  root.replaceWith(fresh);
  root = fresh;
  const container = fresh;
  const path = location.pathname;
  for (const r of routes) {
    const match = r.pattern.exec(path);
    if (!match) continue;
    const params = Object.fromEntries(r.keys.map((k, i) => [k, decodeURIComponent(match[i + 1])]));
    const done = await r.page(container, params);
    if (current === renders) cleanup = done;
    else if (done) done();
    return;
  }
  navigate("/", true);
}

export function start(element: HTMLElement): void {
  root = element;
  window.addEventListener("popstate", () => void render());
  void render();
}
