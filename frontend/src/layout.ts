/**
 * The frame every page after login sits in: the header bar (the app's name, Projects, Users for
 * admins, Account, who is logged in, Log out) and, on a project's pages, the project bar (its name
 * and its pages). Pages call `frame` once and fill the `main` it returns.
 */
import { getProject, me, setToken } from "./api/client";
import type { Project, User } from "./api/types";
import { h } from "./dom";
import { navigate } from "./router";

export type Section =
  | "projects" | "users" | "account"
  | "images" | "members" | "settings" | "annotate" | "review" | "dashboard" | "models";

export interface Frame {
  main: HTMLElement;
  user: User;
  project: Project | null;
}

export interface FrameOptions {
  /** The project whose pages these are: its bar is shown. */
  projectId?: number;
  /** The page's own title (the browser tab shows it with the project's name). */
  title: string;
  /** Full-height pages (annotate, review): `main` fills the window below the bars, no page margins. */
  fill?: boolean;
}

const PROJECT_PAGES: [Section, string, (id: number) => string][] = [
  ["images", "Images", (id) => `/projects/${id}/images`],
  ["members", "Members", (id) => `/projects/${id}/members`],
  ["settings", "Settings", (id) => `/projects/${id}/settings`],
  ["annotate", "Annotate", (id) => `/annotate/${id}`],
  ["review", "Review", (id) => `/review/${id}`],
  ["dashboard", "Dashboard", (id) => `/dashboard/${id}`],
  ["models", "Models", (id) => `/models/${id}`],
];

function link(href: string, label: string, current: boolean, section: string): HTMLAnchorElement {
  return h("a", { href, "data-nav": section, "aria-current": current ? "page" : false }, label);
}

/** Draws the frame into `root` and returns its `main`, the user and the project (one request each). */
export async function frame(root: HTMLElement, section: Section, options: FrameOptions): Promise<Frame> {
  const { projectId } = options;
  const [user, project] = await Promise.all([me(), projectId === undefined ? null : getProject(projectId)]);
  const logout = h("button", { class: "link", "data-action": "logout", onclick: () => (setToken(null), navigate("/login")) }, "Log out");
  const header = h(
    "header",
    { class: "bar" },
    h("a", { href: "/", class: "brand" }, "Data Engine"),
    h(
      "nav",
      { "aria-label": "Main" },
      link("/", "Projects", section === "projects", "projects"),
      user.role === "admin" ? link("/users", "Users", section === "users", "users") : null,
      link("/account", "Account", section === "account", "account"),
    ),
    h("span", { class: "who muted", "data-user": user.username }, `${user.username} (${user.role})`),
    logout,
  );
  const projectBar = project
    ? h(
        "nav",
        { class: "bar project-bar", "aria-label": "Project" },
        h("strong", { "data-project-name": "" }, project.name),
        project.archived ? h("span", { class: "tag" }, "archived") : null,
        ...PROJECT_PAGES.map(([key, label, href]) => link(href(project.id), label, section === key, key)),
      )
    : null;
  const main = h("main", { class: options.fill ? "fill" : "page" });
  root.append(h("div", { class: options.fill ? "frame fill" : "frame" }, header, projectBar, main));
  document.title = [options.title, project?.name, "Data Engine"].filter(Boolean).join(" · ");
  return { main, user, project };
}
