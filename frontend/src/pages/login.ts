import { ApiError, login } from "../api/client";
import { h } from "../dom";
import { navigate } from "../router";

export function loginPage(root: HTMLElement): void {
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "card login" },
    h("h1", {}, "Data Engine"),
    h("label", {}, "Username", username),
    h("label", {}, "Password", password),
    h("button", { type: "submit" }, "Log in"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await login(username.value, password.value);
      const next = new URLSearchParams(location.search).get("next");
      navigate(next && next.startsWith("/") ? next : "/");
    } catch (e) {
      error.textContent = e instanceof ApiError && e.status === 401 ? "Wrong username or password." : String(e);
    }
  });
  root.append(form);
  username.focus();
}
