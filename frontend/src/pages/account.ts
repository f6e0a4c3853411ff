/** The user's own account: change the password (the answer's fresh token replaces this session's,
 * which the change revoked), or log out everywhere. */
import { ApiError } from "../api/client";
import { changeOwnPassword, revokeOwnTokens } from "../api/users";
import { h } from "../dom";
import { clearErrors, field, fieldError, showErrors } from "../forms";
import { frame } from "../layout";
import { navigate } from "../router";

export async function accountPage(root: HTMLElement): Promise<void> {
  const { main, user } = await frame(root, "account", { title: "Account" });
  const current = h("input", { type: "password", name: "current_password", autocomplete: "current-password" });
  const fresh = h("input", { type: "password", name: "new_password", autocomplete: "new-password" });
  const repeat = h("input", { type: "password", name: "repeat_password", autocomplete: "new-password" });
  const general = h("p", { class: "error", role: "alert" });
  const done = h("p", { class: "ok", "data-status": "", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card form", "data-form": "password", novalidate: true },
    h("h2", {}, "Change your password"),
    field("current_password", "Current password", current),
    field("new_password", "New password", fresh, "at least 8 characters"),
    field("repeat_password", "New password again", repeat),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Change password")),
    general,
    done,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, general);
    done.textContent = "";
    if (fresh.value !== repeat.value) {
      fieldError(form, "repeat_password", "the two new passwords differ");
      return;
    }
    try {
      await changeOwnPassword(current.value, fresh.value);
      form.reset();
      done.textContent = "Password changed. Other sessions of this account are logged out.";
    } catch (error) {
      // A wrong current password is a 400 (it counts as a failed login), not a validation error.
      if (error instanceof ApiError && error.status === 400) fieldError(form, "current_password", error.message);
      else showErrors(form, error, general);
    }
  });
  const everywhere = h("button", {
    "data-action": "revoke-tokens",
    onclick: async () => {
      await revokeOwnTokens();
      navigate("/login");
    },
  }, "Log out everywhere");
  main.append(
    h("h1", {}, "Account"),
    h("p", { class: "muted" }, `Logged in as ${user.username}, role ${user.role}.`),
    form,
    h("section", { class: "card form" }, h("h2", {}, "Sessions"),
      h("p", { class: "muted" }, "Ends every session of this account, on every device, this one included."), h("div", {}, everywhere)),
  );
}
