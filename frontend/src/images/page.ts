/**
 * A project's images (/projects/:projectId/images): upload (managers), computing the embeddings
 * with live progress (managers, ML engineers), and the paged list with thumbnails, status,
 * assignee and mask count, filtered by status and assignee; managers assign an image to a member
 * (their next claim gives it to them) and delete images.
 */
import { assignImage, deleteImage, listImages, startEmbedding, thumbnailUrl, type ImageFilter } from "../api/images";
import { followJob, isLive, listJobs, type Job } from "../api/jobs";
import { listMembers, manages, roleIn } from "../api/projects";
import type { ImageInfo, ImageStatus, Member } from "../api/types";
import { append, h } from "../dom";
import { frame } from "../layout";
import type { Cleanup } from "../router";
import { exchangePanel } from "./exchange";
import { uploadPanel } from "./upload";

const PAGE_SIZE = 24;
const STATUSES: [ImageStatus | "", string][] = [["", "any status"], ["new", "new"], ["in_progress", "in progress"], ["done", "done"]];
const DELETE_CONFIRM_MS = 4000;

export async function imagesPage(root: HTMLElement, params: Record<string, string>): Promise<Cleanup> {
  const projectId = Number(params.projectId);
  const { main, user } = await frame(root, "images", { projectId, title: "Images" });
  const members = await listMembers(projectId);
  const role = roleIn(user, members);
  const managing = manages(role);
  const thumbnails = new Set<string>();
  let stopFollowing: (() => void) | null = null;
  let offset = 0;
  let filter: ImageFilter = {};
  let reloads = 0;

  const message = h("p", { "data-status": "", "aria-live": "polite" });
  const say = (text: string, isError = false) => {
    message.className = isError ? "error" : "ok";
    message.textContent = text;
  };

  // Filters and paging.
  const statusFilter = h("select", { name: "status" }, ...STATUSES.map(([v, label]) => h("option", { value: v }, label)));
  const assigneeFilter = h("select", { name: "assigned_to" }, h("option", { value: "" }, "anyone"),
    ...members.map((m) => h("option", { value: m.user_id }, m.username)));
  const onFilter = () => {
    filter = {
      status: (statusFilter.value || undefined) as ImageStatus | undefined,
      assignedTo: assigneeFilter.value ? Number(assigneeFilter.value) : undefined,
    };
    offset = 0;
    void reload();
  };
  statusFilter.addEventListener("change", onFilter);
  assigneeFilter.addEventListener("change", onFilter);
  const range = h("span", { class: "muted", "data-range": "" });
  const previous = h("button", { "data-action": "previous", onclick: () => ((offset = Math.max(0, offset - PAGE_SIZE)), void reload()) }, "← Previous");
  const next = h("button", { "data-action": "next", onclick: () => ((offset += PAGE_SIZE), void reload()) }, "Next →");
  const body = h("tbody");

  const row = (image: ImageInfo): HTMLElement => {
    const thumb = h("img", { alt: "", width: 64, height: 64, class: "thumb" });
    void thumbnailUrl(image).then((url) => {
      thumbnails.add(url);
      thumb.src = url;
    }).catch(() => thumb.classList.add("missing"));
    const assignee = managing ? assigneeSelect(image, members) : h("span", {}, image.assigned_username ?? "–");
    return h(
      "tr",
      { "data-image": image.id, "data-file-name": image.file_name, "data-image-status": image.status },
      h("td", {}, thumb),
      h("td", {}, h("a", { href: `/annotate/${projectId}/${image.id}` }, image.file_name), h("div", { class: "muted" }, `#${image.id} · ${image.width}×${image.height}`)),
      h("td", {}, STATUSES.find(([s]) => s === image.status)?.[1] ?? image.status),
      h("td", {}, assignee),
      h("td", { "data-mask-count": "" }, String(image.mask_count ?? "–")),
      // What is still missing: the share of the image no mask covers yet.
      h("td", { "data-uncovered": image.uncovered_fraction }, `${Math.round(image.uncovered_fraction * 100)}%`),
      // Flagged, not refused: a frame that nearly repeats an earlier upload (pooled embeddings).
      h("td", { "data-near-duplicate": image.near_duplicate_of ?? "" }, image.near_duplicate_of === null ? "" : `#${image.near_duplicate_of}`),
      h("td", {}, managing ? deleteButton(image) : null),
    );
  };

  const assigneeSelect = (image: ImageInfo, options: Member[]): HTMLSelectElement => {
    const select = h("select", { name: "assignee", "data-assign": image.id }, h("option", { value: "" }, "nobody"),
      ...options.map((m) => h("option", { value: m.user_id, selected: m.user_id === image.assigned_to }, m.username)));
    select.addEventListener("change", async () => {
      const userId = select.value ? Number(select.value) : null;
      try {
        const out = await assignImage(image.id, userId);
        say(userId === null ? `${image.file_name} is assigned to nobody.` : `${image.file_name} is assigned to ${out.assigned_username ?? select.selectedOptions[0].text}.`);
        select.dataset.assigned = String(out.assigned_to ?? "");
      } catch (error) {
        say(`${image.file_name}: ${(error as Error).message}`, true);
        select.value = String(image.assigned_to ?? "");
      }
    });
    return select;
  };

  const deleteButton = (image: ImageInfo): HTMLButtonElement => {
    let armed = 0;
    const button = h("button", { class: "danger", "data-action": "delete" }, "Delete");
    button.addEventListener("click", async () => {
      if (!armed) {
        button.textContent = "Delete with its masks?";
        armed = window.setTimeout(() => ((armed = 0), (button.textContent = "Delete")), DELETE_CONFIRM_MS);
        return;
      }
      clearTimeout(armed);
      try {
        await deleteImage(image.id);
        say(`${image.file_name} deleted with its masks.`);
      } catch (error) {
        say(`${image.file_name}: ${(error as Error).message}`, true);
      }
      await reload();
    });
    return button;
  };

  async function reload(): Promise<void> {
    const current = ++reloads;
    const page = await listImages(projectId, filter, offset, PAGE_SIZE);
    if (current !== reloads) return;
    for (const url of thumbnails) URL.revokeObjectURL(url);
    thumbnails.clear();
    body.replaceChildren(...page.images.map(row));
    range.textContent = page.total ? `${offset + 1}–${offset + page.images.length} of ${page.total}` : "no images";
    range.dataset.total = String(page.total);
    previous.disabled = offset === 0;
    next.disabled = offset + page.images.length >= page.total;
  }

  // Embeddings: one job for the project's images that lack one, followed live.
  const mayEmbed = managing || role === "ml_engineer";
  const jobBar = h("progress", { max: 1, value: 0 });
  const jobText = h("span", { class: "muted", "data-embed-status": "" }, "no embedding job yet");
  const embedButton = h("button", { "data-action": "embed" }, "Compute embeddings");
  const showJob = (job: Job) => {
    jobBar.value = job.progress;
    jobText.textContent = `job ${job.id} ${job.status}${job.message ? `: ${job.message}` : ""}${job.error ? ` — ${job.error}` : ""}`;
    jobText.dataset.jobStatus = job.status;
    embedButton.disabled = isLive(job);
  };
  const follow = (job: Job) => {
    stopFollowing?.();
    showJob(job);
    if (isLive(job)) stopFollowing = followJob<Job>(job.id, showJob, () => void reload());
  };
  embedButton.addEventListener("click", async () => {
    try {
      follow(await startEmbedding(projectId));
    } catch (error) {
      say((error as Error).message, true);
    }
  });

  append(main, 
    h("h1", {}, "Images"),
    message,
    managing ? uploadPanel(projectId, () => void reload()) : null,
    mayEmbed ? exchangePanel(projectId) : null,
    mayEmbed
      ? h("section", { class: "card embed" }, h("h2", {}, "Embeddings"),
          h("p", { class: "muted" }, "Computing every image's embedding ahead saves annotators the wait when they open one."),
          h("div", { class: "row" }, embedButton, jobBar, jobText))
      : null,
    h("section", { class: "card" },
      h("div", { class: "row toolbar" }, h("h2", {}, "All images"), statusFilter, assigneeFilter, h("span", { class: "spacer" }), range, previous, next),
      h("table", { class: "table images", "data-table": "images" },
        h("thead", {}, h("tr", {}, ...["", "file", "status", "assigned to", "masks", "uncovered", "near duplicate of", ""].map((t) => h("th", {}, t)))),
        body)),
  );
  await reload();
  if (mayEmbed) {
    const [latest] = await listJobs(projectId, "embed", 1);
    if (latest) follow(latest);
  }
  return () => {
    stopFollowing?.();
    for (const url of thumbnails) URL.revokeObjectURL(url);
  };
}
