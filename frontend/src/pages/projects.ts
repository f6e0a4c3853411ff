/**
 * The projects the user is a member of (all of them for an admin), each with its pages; managers
 * and admins also create projects here and may show the archived ones.
 */
import { createProject, listProjects } from "../api/projects";
import type { Project, User } from "../api/types";
import { append, h } from "../dom";
import { clearErrors, field, showErrors } from "../forms";
import { frame } from "../layout";
import { navigate } from "../router";

export const STAGE_NAMES: Record<string, string> = {
  assisted_manual: "assisted-manual",
  semi_automatic: "semi-automatic",
  fully_automatic: "fully automatic",
  done: "done",
};

function projectCard(p: Project): HTMLElement {
  return h(
    "li",
    { class: "card project", "data-project-id": p.id, "data-archived": String(Boolean(p.archived)) },
    h("div", {}, h("strong", {}, p.name), h("span", { class: "muted" }, ` · ${STAGE_NAMES[p.stage] ?? p.stage}`),
      p.archived ? h("span", { class: "tag" }, "archived") : null),
    p.description ? h("p", { class: "muted" }, p.description) : null,
    h("div", { class: "muted" }, `${p.image_count} images`),
    h(
      "div",
      { class: "actions" },
      h("a", { href: `/annotate/${p.id}`, class: "button", "data-project": p.id }, "Annotate"),
      h("a", { href: `/projects/${p.id}/images`, class: "button secondary" }, "Images"),
      h("a", { href: `/projects/${p.id}/members`, class: "button secondary" }, "Members"),
      h("a", { href: `/projects/${p.id}/settings`, class: "button secondary" }, "Settings"),
      h("a", { href: `/review/${p.id}`, class: "button secondary" }, "Review"),
      h("a", { href: `/dashboard/${p.id}`, class: "button secondary" }, "Dashboard"),
      h("a", { href: `/models/${p.id}`, class: "button secondary" }, "Models"),
    ),
  );
}

function emptyText(user: User): string {
  if (user.role === "admin") return "No projects yet. Create one below, and the accounts of your team on the Users page.";
  if (user.role === "manager") return "No projects yet. Create one below.";
  return "You are not a member of any project yet: a manager adds you to one.";
}

/** Name and description; the settings are edited on the new project's settings page. */
function createForm(): HTMLFormElement {
  const name = h("input", { name: "name", required: true, maxlength: 200 });
  const description = h("textarea", { name: "description", rows: 2, maxlength: 10000 });
  const general = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "card form", "data-form": "create-project", novalidate: true },
    h("h2", {}, "New project"),
    field("name", "Name", name),
    field("description", "Description", description),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create project")),
    general,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, general);
    try {
      const project = await createProject({ name: name.value.trim(), description: description.value.trim(), settings: {} });
      navigate(`/projects/${project.id}/settings`);
    } catch (error) {
      showErrors(form, error, general);
    }
  });
  return form;
}

export async function projectsPage(root: HTMLElement): Promise<void> {
  const { main, user } = await frame(root, "projects", { title: "Projects" });
  const mayCreate = user.role === "admin" || user.role === "manager";
  const list = h("ul", { class: "projects" });
  const empty = h("p", { "data-empty": "" });
  const showArchived = h("input", { type: "checkbox", name: "include_archived" });
  const load = async () => {
    const projects = await listProjects(showArchived.checked);
    list.replaceChildren(...projects.map(projectCard));
    empty.textContent = projects.length ? "" : emptyText(user);
  };
  showArchived.addEventListener("change", () => void load());
  append(main, 
    h("div", { class: "title-row" }, h("h1", {}, "Projects"),
      mayCreate ? h("label", { class: "inline" }, showArchived, " show archived") : null),
    empty,
    list,
    mayCreate ? createForm() : null,
  );
  await load();
}
