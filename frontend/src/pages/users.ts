/**
 * Accounts (admins): every user with their role and state; create one, set a new password for one
 * (their sessions end), deactivate (no more logins, nothing deleted) or reactivate.
 */
import { createUser, listUsers, resetPassword, setActive } from "../api/users";
import type { Role, User } from "../api/types";
import { h } from "../dom";
import { clearErrors, field, showErrors } from "../forms";
import { frame } from "../layout";

export const ROLES: [Role, string][] = [
  ["annotator", "annotator"],
  ["manager", "manager"],
  ["ml_engineer", "ML engineer"],
  ["admin", "admin"],
];

export function roleSelect(name: string, roles: [Role, string][], selected?: Role | null): HTMLSelectElement {
  return h("select", { name }, ...roles.map(([value, label]) => h("option", { value, selected: value === selected }, label)));
}

export async function usersPage(root: HTMLElement): Promise<void> {
  const { main, user: me } = await frame(root, "users", { title: "Users" });
  const message = h("p", { "data-status": "", "aria-live": "polite" });
  const body = h("tbody");
  const say = (text: string, isError = false) => {
    message.className = isError ? "error" : "ok";
    message.textContent = text;
  };

  const row = (u: User): HTMLElement => {
    const password = h("input", { type: "password", name: "new_password", placeholder: "new password", autocomplete: "new-password" });
    const reset = h("form", { class: "inline", "data-form": "reset-password", novalidate: true },
      password, h("button", { type: "submit" }, "Set password"));
    reset.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await resetPassword(u.id, password.value);
        password.value = "";
        say(`${u.username}'s password is set; their sessions are logged out.`);
      } catch (error) {
        say(`${u.username}: ${(error as Error).message}`, true);
      }
    });
    const toggle = h("button", {
      "data-action": u.is_active ? "deactivate" : "reactivate",
      disabled: u.id === me.id,
      title: u.id === me.id ? "you cannot deactivate your own account" : "",
      onclick: async () => {
        try {
          await setActive(u.id, !u.is_active);
          say(`${u.username} ${u.is_active ? "deactivated" : "reactivated"}.`);
          await load();
        } catch (error) {
          say(`${u.username}: ${(error as Error).message}`, true);
        }
      },
    }, u.is_active ? "Deactivate" : "Reactivate");
    return h(
      "tr",
      { "data-user-row": u.username, "data-active": String(u.is_active), class: u.is_active ? "" : "inactive" },
      h("td", {}, u.username),
      h("td", {}, ROLES.find(([r]) => r === u.role)?.[1] ?? u.role),
      h("td", {}, u.is_active ? "active" : "deactivated"),
      h("td", { class: "muted" }, new Date(u.created_at).toLocaleDateString()),
      h("td", {}, reset),
      h("td", {}, toggle),
    );
  };
  const load = async () => body.replaceChildren(...(await listUsers()).map(row));

  const username = h("input", { name: "username", autocomplete: "off", maxlength: 150 });
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password" });
  const role = roleSelect("role", ROLES, "annotator");
  const general = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "card form", "data-form": "create-user", novalidate: true },
    h("h2", {}, "New user"),
    h("div", { class: "fields" },
      field("username", "Username", username, "letters, digits and _ . @ -"),
      field("password", "Password", password, "at least 8 characters; tell them out of band"),
      field("role", "Role", role)),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create user")),
    general,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, general);
    try {
      const created = await createUser({ username: username.value.trim(), password: password.value, role: role.value as Role });
      form.reset();
      say(`${created.username} created.`);
      await load();
    } catch (error) {
      showErrors(form, error, general);
    }
  });

  main.append(
    h("h1", {}, "Users"),
    message,
    h("table", { class: "table", "data-table": "users" },
      h("thead", {}, h("tr", {}, ...["user", "role", "state", "created", "password", ""].map((t) => h("th", {}, t)))),
      body),
    form,
  );
  await load();
}
