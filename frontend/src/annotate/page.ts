/**
 * The annotate page: an annotate session over a project's images in one mask editor (editor/), and
 * what is the page's own: the image's saved masks, accepting (saving) the working mask, and moving
 * between images. The same page shows masks pre-filled by later stages (detector, automatic), so
 * every stage annotates here: a wrong pre-filled mask is deleted, or corrected ("correct" or C over
 * it: the working mask starts as it, and accepting saves the result with `replaces_mask_id`, which
 * hides the old mask and records the pre-fill as corrected).
 *
 * /annotate/:projectId claims the next unfinished image and redirects to /annotate/:projectId/:imageId;
 * opening an image by id (re)takes its lock, which the page keeps fresh while it is open.
 *
 * The session lives as long as the annotator stays in the project: the router keeps the page when
 * only the image changes, so the decoder's worker, its onnxruntime sessions and the editor are made
 * once. Claiming, *Done, next*, *Previous* and the prefetch of the neighbours are the session's
 * (session.ts); this module is the page's layout, its model line and re-embedding notice, and the
 * glue between the editor and the image's saved masks.
 *
 * Each image decodes with the decoder of the version its embedding came from (editor/decoder.ts).
 * After a promotion to a new image encoder the project is re-embedded in the background; until the
 * job reaches an image, the server still sends the previous version's embedding of it, and the panel
 * says so ("re-embedding" notice): that image decodes with the previous version, the others with
 * the new one, never one version's decoder on the other's embedding.
 */
import * as api from "../api/client";
import type { Embedding, ImageInfo, MaskOut, ModelVersion } from "../api/types";
import { h } from "../dom";
import { DecoderHost } from "../editor/decoder";
import { MaskEditor } from "../editor/editor";
import { decodeRle, encodeRle } from "../editor/rle";
import { isEmpty } from "../editor/store";
import { frame } from "../layout";
import { navigate, type KeptPage } from "../router";
import { ImageMasks } from "./image_masks";
import { renderMaskList } from "./mask_list";
import { saver, type SaveEvent } from "./saver";
import { AnnotateSession, type SessionView } from "./session";
import { helpPanel } from "./shortcuts";

export async function annotatePage(container: HTMLElement, params: Record<string, string>): Promise<KeptPage | void> {
  const projectId = Number(params.projectId);
  const { main: root } = await frame(container, "annotate", { projectId, title: "Annotate", fill: true });
  if (!params.imageId) {
    root.append(h("p", { class: "page" }, "Finding the next image…"));
    const next = await api.claimNext(projectId);
    if (next) return navigate(`/annotate/${projectId}/${next.id}`, true);
    notice(root, h("h1", {}, "Nothing left to annotate"), h("p", {}, "Every image of this stage is done or being annotated by someone else."));
    return;
  }
  const model = await api.getModel(projectId);
  const page = new AnnotatePage(root, projectId, model);
  void page.session.go(Number(params.imageId));
  return {
    cleanup: page.cleanup,
    update: (next) => {
      if (Number(next.projectId) !== projectId || !next.imageId) return false;
      void page.session.go(Number(next.imageId));
      return true;
    },
  };
}

function notice(root: HTMLElement, ...children: (Node | string)[]): void {
  root.replaceChildren(h("div", { class: "page card" }, ...children, h("p", {}, h("a", { href: "/" }, "Back to projects"))));
}

/** A UUID for idempotent saves; crypto.randomUUID exists only in secure contexts (not plain-HTTP LAN hosts). */
function newClientId(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The image shown: its row (as claimed), its masks, and [h, w] as the embedding describes it (the frame of every mask saved). */
interface Shown {
  image: ImageInfo;
  /** Resolves once the image is claimed (a prefetched image is shown while `claim next` confirms it): saves wait for it. */
  claimed: Promise<unknown>;
  masks: ImageMasks;
  size: [number, number];
}

/** The page: its layout and the editing glue; the session (session.ts) decides which image it shows. */
class AnnotatePage implements SessionView {
  readonly session: AnnotateSession;
  private readonly decoders: DecoderHost;
  private readonly editor: MaskEditor;
  private readonly disposers: (() => void)[] = [];
  private readonly saveStatus = h("div", { class: "save-status", "aria-live": "polite" });
  private readonly maskList = h("ul", { class: "masks" });
  private readonly fileName = h("strong", { "data-testid": "file-name" });
  private readonly imageSize = h("div", { class: "muted" });
  private readonly layout: HTMLElement;
  private help: HTMLElement | null = null;
  private current: Shown | null = null;
  /** The version serving the project, as last asked (the page asks again when an embedding names a version it has not seen). */
  private serving: ModelVersion;
  private readonly versionsSeen = new Set<number>();
  private readonly modelLine = h("div", { "data-testid": "model-version" });
  /** Shown while the image's embedding is another version's than the serving one (the project is being re-embedded). */
  private readonly reembedNotice = h("div", { role: "status", "data-testid": "reembedding", hidden: true });

  constructor(
    private readonly root: HTMLElement,
    private readonly projectId: number,
    model: ModelVersion,
  ) {
    this.serving = model;
    this.versionsSeen.add(model.id);
    const stage = h("div", { class: "stage", "data-testid": "stage" });
    this.decoders = new DecoderHost();
    this.decoders.know(model);
    this.editor = new MaskEditor(stage, this.decoders, { boxes: true, editing: true });
    this.session = new AnnotateSession(projectId, this);
    this.layout = h("div", { class: "annotate" }, stage, this.sidePanel());
    this.showModel();
    this.disposers.push(this.editor.subscribe(() => this.render()));
    void this.decoders.load(model.id).catch(() => undefined); // the serving version's graphs load while the first image does

    const onKey = (e: KeyboardEvent) => this.onKey(e);
    window.addEventListener("keydown", onKey);
    this.disposers.push(() => window.removeEventListener("keydown", onKey));
    this.disposers.push(saver.subscribe((e) => this.onSave(e)));
  }

  readonly cleanup = (): void => {
    this.session.close();
    for (const dispose of this.disposers) dispose();
    this.editor.dispose();
    this.decoders.terminate();
    this.session.clearCache();
  };

  // ---- what the session asks of the page (SessionView) ------------------------------------------

  shown(): Shown | null {
    return this.current;
  }

  nothingLeft(): void {
    this.current = null;
    this.editor.close();
    notice(this.root, h("h1", {}, "Nothing left to annotate"), h("p", {}, "Every image of this stage is done or being annotated by someone else."));
  }

  show(image: ImageInfo, bitmap: ImageBitmap, masks: MaskOut[], embedding: Embedding, fetched: Promise<Embedding>, claimed: Promise<unknown>): void {
    const size = embedding.originalSize;
    if (!this.layout.isConnected) this.root.replaceChildren(this.layout);
    const shown: Shown = { image, claimed, masks: new ImageMasks(masks), size };
    for (const p of saver.pending(image.id)) shown.masks.restore(p.body);
    this.current = shown;
    this.fileName.textContent = image.file_name;
    this.imageSize.textContent = `${size[1]}×${size[0]} px`;
    this.saveStatus.textContent = "";
    this.saveStatus.dataset.state = "";
    this.editor.open({ id: image.id, bitmap, originalSize: size, inputSize: embedding.inputSize, embedding: fetched });
    this.editor.loadDecoder();
    this.showEmbeddingVersion(image.id, embedding.modelVersionId);
    void this.checkServing(image.id, embedding.modelVersionId);
  }

  /**
   * An embedding of a version the page has not seen: the project was promoted (or re-embedded) since
   * the page asked which version serves it; it asks again, once per version seen.
   */
  private async checkServing(imageId: number, versionId: number): Promise<void> {
    if (this.versionsSeen.has(versionId)) return;
    this.versionsSeen.add(versionId);
    const model = await api.getModel(this.projectId).catch(() => null);
    if (model === null || this.session.closed) return;
    this.serving = model;
    this.versionsSeen.add(model.id);
    this.decoders.know(model);
    this.showModel();
    if (this.current?.image.id === imageId) this.showEmbeddingVersion(imageId, versionId);
  }

  private showModel(): void {
    const model = this.serving;
    this.modelLine.textContent = `Model: #${model.id} ${model.name} · ${model.architecture} · ${model.origin}`;
    this.modelLine.dataset.modelVersion = String(model.id);
  }

  /** The re-embedding notice, when image `imageId`'s embedding is not the serving version's. */
  private showEmbeddingVersion(imageId: number, versionId: number): void {
    const notice = this.reembedNotice;
    notice.hidden = versionId === this.serving.id;
    notice.className = notice.hidden ? "" : "banner"; // styled as a banner only while shown
    notice.dataset.modelVersion = String(versionId);
    notice.dataset.imageId = String(imageId);
    notice.textContent = notice.hidden
      ? ""
      : `The project is being re-embedded for model #${this.serving.id}; this image's new embedding is not ready yet, so it decodes with model #${versionId}, whose encoder made the embedding it has.`;
  }

  fail(message: string): void {
    this.current = null;
    this.editor.close();
    notice(this.root, h("p", { class: "error" }, message));
  }

  mayDiscardWorking(): boolean {
    return isEmpty(this.editor.store.working) || confirm("Discard the mask you have not accepted?");
  }

  status(text: string): void {
    this.saveStatus.textContent = text;
  }

  lockLost(message: string): void {
    this.editor.status.textContent = `lock lost: ${message}`;
  }

  prepare(imageId: number, embedding: Promise<Embedding>): void {
    void this.decoders.prepare(imageId, embedding).catch(() => undefined); // a failure is retried when it is opened
  }

  // ---- side panel -------------------------------------------------------------------------------

  private sidePanel(): HTMLElement {
    const model = this.serving;
    const editor = this.editor;
    const banner =
      model.origin === "untrained"
        ? h(
            "div",
            { class: "banner", role: "status" },
            "Random weights: masks are meaningless until real weights are in: ",
            h("code", {}, "dataengine models download vit_b --make-default"),
            " (offline: ",
            h("code", {}, "dataengine models import sam_vit_b_01ec64.pth --arch vit_b --make-default"),
            ")",
          )
        : null;
    const previous = h("button", { title: "Shift+N", onclick: () => this.session.previous() }, "◀ Previous");
    const next = h("button", { class: "primary", title: "N", onclick: () => void this.session.next() }, "Done, next ▶");
    return h(
      "aside",
      {},
      h("div", { class: "row" }, h("button", { class: "link", title: "?", onclick: () => this.toggleHelp() }, "Shortcuts (?)")),
      h("div", {}, this.fileName, this.imageSize),
      this.modelLine,
      banner,
      this.reembedNotice,
      editor.status,
      editor.toolbar,
      h("div", {}, h("div", { class: "muted" }, "Candidates (Tab, 1 2 3)"), editor.candidates),
      h(
        "div",
        { class: "row" },
        editor.undoButton,
        editor.redoButton,
        h("button", { title: "Esc", onclick: () => editor.store.clear() }, "Clear"),
        h("button", { class: "primary", title: "Enter", "data-testid": "accept", onclick: () => this.accept() }, "Accept"),
      ),
      this.saveStatus,
      h("div", { class: "row" }, editor.coverageButton, editor.uncoveredText),
      h("div", {}, h("div", { class: "row" }, h("strong", {}, "Masks"), h("button", { class: "link", title: "H", onclick: () => this.toggleAll() }, "hide/show all")), this.maskList),
      h("div", { class: "row" }, previous, next),
    );
  }

  private toggleHelp(): void {
    if (this.help) {
      this.help.remove();
      this.help = null;
    } else {
      this.help = helpPanel(() => this.toggleHelp());
      this.root.append(this.help);
    }
  }

  /** The image's masks on the canvas and in the list (the editor draws the working mask itself). */
  private render(): void {
    const shown = this.current;
    if (!shown) return;
    const correcting = this.editor.store.correcting?.maskId ?? null;
    this.editor.drawSaved(shown.masks.layers(correcting));
    this.editor.drawCoverage(shown.masks.layers(null, true));
    renderMaskList(this.maskList, shown.masks, correcting, {
      correct: (mask) => this.correct(mask),
      remove: (mask) => void this.deleteSaved(mask),
      changed: () => this.render(),
    });
  }

  // ---- accept, save, correct, delete ------------------------------------------------------------

  /**
   * Encodes the working mask at full resolution and hands it to the saver (which never drops it). A
   * correction is saved with `replaces_mask_id`; the mask it replaces leaves the view at once.
   */
  private accept(): void {
    const store = this.editor.store;
    const shown = this.current;
    if (!shown) return;
    void Promise.all([this.editor.settled(), shown.claimed]).then(() => {
      if (this.current !== shown) return; // moved on to another image meanwhile
      const working = store.working;
      const correcting = store.correcting;
      if (isEmpty(working)) {
        if (correcting) {
          store.clear();
          this.saveStatus.textContent = `#${correcting.maskId} unchanged`;
          this.saveStatus.dataset.state = "";
        }
        return;
      }
      const mask = this.editor.fullMask();
      if (!mask.some((v) => v)) {
        this.saveStatus.textContent = correcting ? "empty mask: nothing to save (delete the mask instead)" : "empty mask: nothing to save";
        this.saveStatus.dataset.state = "";
        return;
      }
      const clientId = newClientId();
      shown.masks.accepted(clientId, mask, correcting?.maskId);
      const [height, width] = shown.size;
      saver.enqueue(shown.image.id, {
        ...(correcting ? { replaces_mask_id: correcting.maskId } : {}),
        client_id: clientId,
        rle: encodeRle(mask, height, width),
        prompts: {
          points: [...working.points],
          box: working.box && [...working.box],
          candidate: working.decoded ? working.candidate : null,
          strokes: working.strokes.length,
        },
        seconds_spent: Math.round(store.secondsSpent() * 10) / 10,
        clicks: store.actions,
      });
      store.clear();
    });
  }

  private onSave(event: SaveEvent): void {
    const shown = this.current;
    if (!shown || !shown.masks.apply(event)) return;
    const status = this.saveStatus;
    switch (event.kind) {
      case "saving":
        status.textContent = "saving…";
        status.dataset.state = "saving";
        break;
      case "saved":
        if (saver.pending(shown.image.id).length === 0) {
          status.textContent = "saved";
          status.dataset.state = "saved";
        }
        break;
      case "retrying":
        status.textContent = `not saved yet (${event.error}); retrying in ${Math.round(event.delayMs / 1000)} s`;
        status.dataset.state = "pending";
        break;
      case "rejected":
        status.textContent = `the server refused the mask: ${event.error}`;
        status.dataset.state = "pending";
        break;
    }
    this.render();
  }

  /**
   * Starts correcting a saved mask: the working mask begins as it, clicks (with it as the decoder's
   * mask input), brush and eraser change it, Enter replaces it, Esc leaves it as it was.
   */
  private correct(mask: MaskOut): void {
    void this.editor.settled().then(() => {
      if (!this.mayDiscardWorking()) return;
      this.editor.store.correct(mask.id, decodeRle(mask.rle));
    });
  }

  private async deleteSaved(mask: MaskOut): Promise<void> {
    try {
      await api.deleteMask(mask.id);
      this.current?.masks.deleted(mask);
      if (this.editor.store.correcting?.maskId === mask.id) this.editor.store.clear(); // renders
      else this.render();
    } catch (error) {
      this.saveStatus.textContent = `delete failed: ${(error as Error).message}`;
    }
  }

  private toggleAll(): void {
    if (!this.current) return;
    this.current.masks.allHidden = !this.current.masks.allHidden;
    this.render();
  }

  // ---- keyboard (the editing keys are the editor's) ---------------------------------------------

  private onKey(e: KeyboardEvent): void {
    if ((e.target as HTMLElement | null)?.tagName === "INPUT") return;
    const editor = this.editor;
    const key = e.key;
    const handled = (() => {
      if (editor.handleKey(e)) return true;
      if (e.ctrlKey || e.metaKey || e.altKey) return false;
      switch (key) {
        case "Enter": this.accept(); return true;
        case "Escape": this.help ? this.toggleHelp() : editor.store.clear(); return true;
        case "Tab": editor.cycleCandidate(); return true;
        case "1": case "2": case "3": editor.selectCandidate(Number(key)); return true;
        case "h": case "H": this.toggleAll(); return true;
        case "u": case "U": editor.toggleUncovered(); return true;
        case "c": case "C": {
          const cursor = editor.cursor;
          const shown = this.current;
          const mask = cursor && shown?.masks.at(Math.floor(cursor[0]), Math.floor(cursor[1]), shown.size[1]);
          if (mask) this.correct(mask);
          return true;
        }
        case "n": void this.session.next(); return true;
        case "N": this.session.previous(); return true;
        case "?": this.toggleHelp(); return true;
        default: return false;
      }
    })();
    if (handled) e.preventDefault();
  }
}
