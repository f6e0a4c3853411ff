import { getToken } from "./api/client";
import { annotatePage } from "./annotate/page";
import { dashboardPage } from "./dashboard/page";
import { loginPage } from "./pages/login";
import { modelsPage } from "./models/page";
import { projectsPage } from "./pages/projects";
import { reviewPage } from "./review/page";
import { navigate, route, start, type Page } from "./router";
import "./style.css";

/** Pages other than login need a token; without one we go to login and come back after. */
function authed(page: Page): Page {
  return (root, params) => {
    if (!getToken()) {
      navigate(`/login?next=${encodeURIComponent(location.pathname)}`, true);
      return;
    }
    return page(root, params);
  };
}

route("/login", loginPage);
route("/", authed(projectsPage));
route("/annotate/:projectId", authed(annotatePage));
route("/annotate/:projectId/:imageId", authed(annotatePage));
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
