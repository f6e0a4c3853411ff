/**
 * Uploading many images at once: files from a drop (folders walked), the file picker or the folder
 * picker, sent in batches of `BATCH_FILES` with a progress bar per batch, and one result row per
 * file: stored, duplicate (of which image) or refused (and why). With `partial=true` the server
 * stores a batch's good files whatever the others are; a batch refused as a whole (too large, the
 * connection lost) marks each of its files refused with the reason and the next batch still goes.
 */
import { ApiError } from "../api/client";
import { uploadBatch, type UploadResult } from "../api/images";
import { h } from "../dom";

export const BATCH_FILES = 20;

type Outcome = "stored" | "duplicate" | "refused";

interface FileResult {
  file: File;
  outcome: Outcome;
  text: string;
  imageId?: number;
}

/** Files under a dropped folder, recursively (DataTransferItem.webkitGetAsEntry: every browser has it). */
async function entryFiles(entry: FileSystemEntry): Promise<File[]> {
  if (entry.isFile) return [await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject))];
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  const children: FileSystemEntry[] = [];
  // readEntries answers at most ~100 entries per call: read until it answers none.
  for (;;) {
    const chunk = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
    if (!chunk.length) break;
    children.push(...chunk);
  }
  return (await Promise.all(children.map(entryFiles))).flat();
}

async function droppedFiles(data: DataTransfer): Promise<File[]> {
  const entries = [...data.items].map((item) => item.webkitGetAsEntry()).filter((e): e is FileSystemEntry => e !== null);
  if (!entries.length) return [...data.files];
  return (await Promise.all(entries.map(entryFiles))).flat();
}

/** Hidden files of a picked folder (.DS_Store and the like) are not images anyone meant to send. */
const wanted = (files: Iterable<File>): File[] => [...files].filter((f) => !f.name.startsWith("."));

/** Pairs each file of a batch with its entry in the answer: by name first (the server reports the
 * name it was sent, cleaned for display), then the files left take the entries left in order. */
function matchResults(files: File[], result: UploadResult): FileResult[] {
  const pending: { name: string; make: (file: File) => FileResult }[] = [
    ...result.images.map((image) => ({ name: image.file_name, make: (file: File): FileResult => ({ file, outcome: "stored", text: `stored as image #${image.id}`, imageId: image.id }) })),
    ...result.duplicates.map((d) => ({ name: d.file_name, make: (file: File): FileResult => ({ file, outcome: "duplicate", text: `duplicate of image #${d.image_id}`, imageId: d.image_id }) })),
    ...(result.refused ?? []).map((r) => ({ name: r.file_name, make: (file: File): FileResult => ({ file, outcome: "refused", text: `refused: ${r.reason}` }) })),
  ];
  const out: (FileResult | null)[] = files.map((file) => {
    const i = pending.findIndex((p) => p.name === file.name);
    return i < 0 ? null : pending.splice(i, 1)[0].make(file);
  });
  return out.map((r, i) => r ?? pending.shift()?.make(files[i]) ?? { file: files[i], outcome: "refused", text: "refused: the server did not report this file" });
}

function resultRow(r: FileResult): HTMLElement {
  return h("tr", { "data-file-result": r.file.name, "data-outcome": r.outcome },
    h("td", {}, r.file.webkitRelativePath || r.file.name),
    h("td", { class: `outcome ${r.outcome}` }, r.outcome),
    h("td", { class: "muted" }, r.text));
}

function batchRow(index: number, count: number, files: number): { row: HTMLElement; show: (share: number, text: string, state: string) => void } {
  const bar = h("progress", { max: 1, value: 0 });
  const label = h("span", { class: "muted" }, "waiting");
  const row = h("li", { class: "batch", "data-batch": index, "data-state": "waiting" },
    h("span", {}, `batch ${index + 1} of ${count} · ${files} files`), bar, label);
  return {
    row,
    show: (share, text, state) => {
      bar.value = share;
      label.textContent = text;
      row.dataset.state = state;
    },
  };
}

/** The upload panel. `onStored` runs after each batch that stored something. */
export function uploadPanel(projectId: number, onStored: () => void): HTMLElement {
  const files = h("input", { type: "file", multiple: true, name: "files", "data-input": "files" });
  const folder = h("input", { type: "file", multiple: true, name: "folder", webkitdirectory: true, "data-input": "folder" });
  const batches = h("ul", { class: "batches", "data-batches": "" });
  const summary = h("p", { "data-upload-summary": "", "aria-live": "polite" });
  const results = h("tbody");
  const table = h("table", { class: "table", "data-table": "upload-results", hidden: true },
    h("thead", {}, h("tr", {}, h("th", {}, "file"), h("th", {}, "result"), h("th", {}, ""))), results);
  let queue: Promise<void> = Promise.resolve();

  const send = async (picked: File[]) => {
    if (!picked.length) return;
    const chunks: File[][] = [];
    for (let i = 0; i < picked.length; i += BATCH_FILES) chunks.push(picked.slice(i, i + BATCH_FILES));
    const rows = chunks.map((chunk, i) => batchRow(i, chunks.length, chunk.length));
    batches.replaceChildren(...rows.map((r) => r.row));
    results.replaceChildren();
    table.hidden = false;
    const counts: Record<Outcome, number> = { stored: 0, duplicate: 0, refused: 0 };
    summary.textContent = `uploading ${picked.length} files…`;
    for (const [i, chunk] of chunks.entries()) {
      const { show } = rows[i];
      let outcome: FileResult[];
      try {
        const answer = await uploadBatch(projectId, chunk, (sent, total) => {
          const share = total ? sent / total : 0;
          show(Math.min(share, 0.99), share >= 1 ? "checking on the server…" : `${Math.floor(share * 100)}%`, "uploading");
        });
        outcome = matchResults(chunk, answer);
        show(1, "100%", "done");
      } catch (error) {
        const reason = error instanceof ApiError ? error.message : String(error);
        outcome = chunk.map((file) => ({ file, outcome: "refused", text: `refused: ${reason}` }));
        show(0, `failed: ${reason}`, "failed");
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) break;
      }
      for (const r of outcome) counts[r.outcome]++;
      results.append(...outcome.map(resultRow));
      if (outcome.some((r) => r.outcome === "stored")) onStored();
    }
    summary.textContent = `${counts.stored} stored, ${counts.duplicate} duplicate${counts.duplicate === 1 ? "" : "s"}, ${counts.refused} refused`;
    summary.dataset.done = "true";
  };
  // One upload at a time: files picked while one runs wait for it.
  const enqueue = (picked: File[]) => {
    summary.dataset.done = "false";
    queue = queue.then(() => send(picked));
  };

  files.addEventListener("change", () => (enqueue(wanted(files.files ?? [])), (files.value = "")));
  folder.addEventListener("change", () => (enqueue(wanted(folder.files ?? [])), (folder.value = "")));
  const zone = h("div", { class: "dropzone", "data-dropzone": "" },
    h("strong", {}, "Drop images or folders here"),
    h("span", { class: "muted" }, `images of the common formats (JPEG, PNG, …), sent ${BATCH_FILES} files per request`),
    h("div", { class: "actions" },
      h("label", { class: "button secondary" }, "Choose files", files),
      h("label", { class: "button secondary" }, "Choose a folder", folder)));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer) void droppedFiles(event.dataTransfer).then((f) => enqueue(wanted(f)));
  });
  return h("section", { class: "card upload" }, h("h2", {}, "Upload"), zone, batches, summary, table);
}
