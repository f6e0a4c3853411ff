import { ApiError, getToken } from "./api/client";
import { annotatePage } from "./annotate/page";
import { dashboardPage } from "./dashboard/page";
import { h } from "./dom";
import { imagesPage } from "./images/page";
import { modelsPage } from "./model_versions/page";
import { accountPage } from "./pages/account";
import { loginPage } from "./pages/login";
import { membersPage } from "./pages/members";
import { projectSettingsPage } from "./pages/project_settings";
import { projectsPage } from "./pages/projects";
import { usersPage } from "./pages/users";
import { reviewPage } from "./review/page";
import { navigate, route, start, type Page } from "./router";
import "./style.css";

const toLogin = () => navigate(`/login?next=${encodeURIComponent(location.pathname)}`, true);

/** Pages other than login need a token; without one (or when the server stops taking it) we go to
 * login and come back after. A page that fails to load says why instead of staying blank. */
function authed(page: Page): Page {
  return async (root, params) => {
    if (!getToken()) return toLogin();
    try {
      return await page(root, params);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return toLogin();
      root.replaceChildren(h("main", { class: "page card" },
        h("p", { class: "error", role: "alert" }, error instanceof Error ? error.message : String(error)),
        h("a", { href: "/" }, "Back to projects")));
    }
  };
}

route("/login", loginPage);
route("/", authed(projectsPage));
route("/users", authed(usersPage));
route("/account", authed(accountPage));
route("/projects/:projectId/images", authed(imagesPage));
route("/projects/:projectId/members", authed(membersPage));
route("/projects/:projectId/settings", authed(projectSettingsPage));
// One page function for both: the annotate session outlives the move from one image to the next.
const annotate = authed(annotatePage);
route("/annotate/:projectId", annotate);
route("/annotate/:projectId/:imageId", annotate);
route("/dashboard/:projectId", authed(dashboardPage));
route("/models/:projectId", authed(modelsPage));
route("/review/:projectId", authed(reviewPage));

// Same-origin links navigate inside the app instead of reloading it.
document.addEventListener("click", (event) => {
  const link = (event.target as Element | null)?.closest?.("a[href^='/']");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey) return;
  event.preventDefault();
  navigate(link.getAttribute("href")!);
});

start(document.getElementById("app")!);
