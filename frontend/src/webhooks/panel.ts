/**
 * The project's webhooks (backend/webhooks) on its settings page, for managers: add a URL with the
 * events it receives (the secret to check signatures with is shown), send a test event, see each
 * hook's last answer and its latest deliveries, remove it.
 */
import { json, request, send } from "../api/client";
import { h } from "../dom";

const EVENTS = ["image.done", "mask.accepted", "job.succeeded", "job.failed", "model_version.promoted"];

interface Hook {
  id: number;
  url: string;
  events: string[];
  secret: string;
  last_status_code: number | null;
  last_response: string | null;
  last_attempt_at: string | null;
}

interface Delivery {
  id: number;
  event: string;
  status: string;
  attempts: number;
  response_code: number | null;
  error: string | null;
  created_at: string;
}

export function webhooksPanel(projectId: number): HTMLElement {
  const base = `/api/projects/${projectId}/webhooks`;
  const list = h("div", { "data-webhooks": "list" });
  const message = h("p", { class: "muted" });
  const say = (text: string, error = false) => {
    message.textContent = text;
    message.className = error ? "error" : "muted";
  };

  const row = (hook: Hook): HTMLElement => {
    const deliveries = h("ul", { class: "muted" });
    const last = hook.last_attempt_at ? `last answer ${hook.last_status_code ?? "none"}: ${hook.last_response ?? ""}` : "nothing sent yet";
    const test = h("button", { type: "button", "data-webhook-test": hook.id }, "Send test event");
    test.addEventListener("click", async () => {
      try {
        await json(`${base}/${hook.id}/test`, send("POST"));
        say("test event queued");
        setTimeout(() => void reload(), 1500);
      } catch (error) {
        say((error as Error).message, true);
      }
    });
    const show = h("button", { type: "button" }, "Deliveries");
    show.addEventListener("click", async () => {
      const items = await json<Delivery[]>(`${base}/${hook.id}/deliveries`);
      deliveries.replaceChildren(...items.slice(0, 10).map((d) =>
        h("li", {}, `${d.created_at} ${d.event}: ${d.status} after ${d.attempts} attempts (${d.response_code ?? d.error ?? ""})`)));
    });
    const remove = h("button", { type: "button" }, "Remove");
    remove.addEventListener("click", async () => {
      await request(`${base}/${hook.id}`, { method: "DELETE" });
      void reload();
    });
    return h("div", { class: "card" },
      h("strong", {}, hook.url), h("p", { class: "muted" }, `${hook.events.join(", ")} · secret ${hook.secret} · ${last}`),
      h("div", { class: "row" }, test, show, remove), deliveries);
  };

  const reload = async () => {
    try {
      list.replaceChildren(...(await json<Hook[]>(base)).map(row));
    } catch (error) {
      say((error as Error).message, true);
    }
  };

  const url = h("input", { type: "url", placeholder: "https://example.org/hook", maxlength: 2000 });
  const boxes = EVENTS.map((name) => [name, h("input", { type: "checkbox", value: name, checked: true })] as const);
  const add = h("button", { type: "button" }, "Add webhook");
  add.addEventListener("click", async () => {
    try {
      const events = boxes.filter(([, box]) => box.checked).map(([name]) => name);
      await json(base, send("POST", { url: url.value, events }));
      url.value = "";
      say("webhook added");
      void reload();
    } catch (error) {
      say((error as Error).message, true);
    }
  });
  void reload();
  return h("section", { class: "card form" }, h("h2", {}, "Webhooks"),
    h("p", { class: "muted" }, "Each event is POSTed as JSON, signed: X-DataEngine-Signature is sha256= the HMAC-SHA256 of \"<X-DataEngine-Timestamp>.<body>\" with the secret."),
    list,
    h("div", { class: "row" }, url, ...boxes.map(([name, box]) => h("label", {}, box, ` ${name}`)), add),
    message);
}
