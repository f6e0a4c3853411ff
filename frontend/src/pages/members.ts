/**
 * A project's members and their role in it. Managers of the project add a user with a role, change
 * a member's role and remove members; the server refuses to remove or demote the last manager and
 * says why, which is shown as is. The role in the project decides their rights there; "global role"
 * (null) means their account's role applies.
 */
import { listUsers } from "../api/users";
import { addMember, changeMemberRole, listMembers, manages, removeMember, roleIn } from "../api/projects";
import type { Member, Role, User } from "../api/types";
import { h } from "../dom";
import { frame } from "../layout";

/** Roles a member can have in a project (admin is global only); "" is "their global role". */
const PROJECT_ROLES: [Role | "", string][] = [
  ["", "their global role"],
  ["annotator", "annotator"],
  ["manager", "manager"],
  ["ml_engineer", "ML engineer"],
];

/** `clearable` false (a member's row): the server changes a role in the project but never clears it,
 * so "their global role" only shows that none was set. */
function projectRoleSelect(name: string, selected: Role | null, clearable = true): HTMLSelectElement {
  const option = ([value, label]: [Role | "", string]) =>
    h("option", { value, selected: value === (selected ?? ""), disabled: value === "" && !clearable }, label);
  return h("select", { name }, ...PROJECT_ROLES.map(option));
}

const roleValue = (select: HTMLSelectElement): Role | null => (select.value === "" ? null : (select.value as Role));

export async function membersPage(root: HTMLElement, params: Record<string, string>): Promise<void> {
  const projectId = Number(params.projectId);
  const { main, user } = await frame(root, "members", { projectId, title: "Members" });
  let members = await listMembers(projectId);
  const editable = manages(roleIn(user, members));
  // Listing accounts needs the global role manager (or admin); a project manager without it adds nobody.
  const users: User[] = editable ? await listUsers().catch(() => []) : [];
  const message = h("p", { "data-status": "", "aria-live": "polite", role: "status" });
  const body = h("tbody");
  const say = (text: string, isError = false) => {
    message.className = isError ? "error" : "ok";
    message.textContent = text;
  };
  const attempt = async (work: () => Promise<unknown>, done: string) => {
    try {
      await work();
      say(done);
    } catch (error) {
      say((error as Error).message, true);
    }
    await load();
  };

  const row = (m: Member): HTMLElement => {
    const role = projectRoleSelect("role_in_project", m.role_in_project, false);
    role.disabled = !editable;
    role.addEventListener("change", () => {
      const chosen = roleValue(role);
      if (chosen) void attempt(() => changeMemberRole(projectId, m.user_id, chosen), `${m.username}'s role changed.`);
    });
    const remove = editable
      ? h("button", { "data-action": "remove", onclick: () => void attempt(() => removeMember(projectId, m.user_id), `${m.username} removed.`) }, "Remove")
      : null;
    return h(
      "tr",
      { "data-member": m.username },
      h("td", {}, m.username),
      h("td", { class: "muted" }, m.role),
      h("td", {}, role),
      h("td", { class: "muted" }, m.role_in_project ?? m.role),
      h("td", { class: "muted" }, new Date(m.added_at).toLocaleDateString()),
      h("td", {}, remove),
    );
  };

  const candidate = h("select", { name: "user_id" });
  const newRole = projectRoleSelect("role_in_project", "annotator");
  const addForm = h(
    "form",
    { class: "card form inline-form", "data-form": "add-member" },
    h("h2", {}, "Add a member"),
    h("label", { class: "field" }, h("span", { class: "field-label" }, "User"), candidate),
    h("label", { class: "field" }, h("span", { class: "field-label" }, "Role in the project"), newRole),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Add")),
  );
  addForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const userId = Number(candidate.value);
    const name = users.find((u) => u.id === userId)?.username ?? `user ${userId}`;
    if (userId) void attempt(() => addMember(projectId, userId, roleValue(newRole)), `${name} added.`);
  });

  async function load(): Promise<void> {
    members = await listMembers(projectId);
    body.replaceChildren(...members.map(row));
    const present = new Set(members.map((m) => m.user_id));
    const free = users.filter((u) => u.is_active && !present.has(u.id));
    candidate.replaceChildren(...free.map((u) => h("option", { value: u.id }, `${u.username} (${u.role})`)));
    addForm.hidden = !editable || !free.length;
  }

  main.append(
    h("h1", {}, "Members"),
    h("p", { class: "muted" }, "A member's rights in this project are those of their role in it; admins may do everything everywhere."),
    message,
    h("table", { class: "table", "data-table": "members" },
      h("thead", {}, h("tr", {}, ...["member", "account role", "role in project", "acts as", "added", ""].map((t) => h("th", {}, t)))),
      body),
    addForm,
  );
  await load();
}
