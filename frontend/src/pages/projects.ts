import { listProjects, me, setToken } from "../api/client";
import { h } from "../dom";
import { navigate } from "../router";

const STAGE_NAMES: Record<string, string> = {
  assisted_manual: "assisted-manual",
  semi_automatic: "semi-automatic",
  fully_automatic: "fully automatic",
  done: "done",
};

export async function projectsPage(root: HTMLElement): Promise<void> {
  const [user, projects] = await Promise.all([me(), listProjects()]);
  const logout = h("button", { class: "link", onclick: () => (setToken(null), navigate("/login")) }, "Log out");
  const rows = projects.map((p) =>
    h(
      "li",
      { class: "card project" },
      h("div", {}, h("strong", {}, p.name), h("span", { class: "muted" }, ` · ${STAGE_NAMES[p.stage] ?? p.stage}`)),
      p.description ? h("p", { class: "muted" }, p.description) : null,
      h("div", { class: "muted" }, `${p.image_count ?? "?"} images`),
      h(
        "div",
        { class: "actions" },
        h("a", { href: `/annotate/${p.id}`, class: "button", "data-project": p.id }, "Annotate"),
        h("a", { href: `/dashboard/${p.id}`, class: "button secondary" }, "Dashboard"),
        h("a", { href: `/models/${p.id}`, class: "button secondary" }, "Models"),
        h("a", { href: `/review/${p.id}`, class: "button secondary" }, "Review"),
      ),
    ),
  );
  root.append(
    h("header", { class: "bar" }, h("strong", {}, "Data Engine"), h("span", { class: "muted" }, `${user.username} (${user.role})`), logout),
    h("main", { class: "page" }, h("h1", {}, "Projects"), rows.length ? h("ul", { class: "projects" }, ...rows) : h("p", {}, "You are not a member of any project yet.")),
  );
}
