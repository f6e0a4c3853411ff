/**
 * The annotate page: one image, its embedding fetched once, the decoder in a Web Worker, and the
 * tools of the assisted-manual stage. The same page shows masks pre-filled by later stages
 * (detector, automatic), so every stage annotates here: a wrong pre-filled mask is deleted, or
 * corrected ("correct" or C over it: the working mask starts as it, and accepting saves the result
 * with `replaces_mask_id`, which hides the old mask and records the pre-fill as corrected).
 *
 * /annotate/:projectId claims the next unfinished image and redirects to /annotate/:projectId/:imageId;
 * opening an image by id (re)takes its lock, which the page keeps fresh while it is open.
 */
import * as api from "../api/client";
import type { Embedding, ImageInfo, MaskCreate, MaskOut, ModelVersion, Point } from "../api/types";
import { h } from "../dom";
import { DecodeSuperseded, DecoderClient } from "../inference/decoder_client";
import { frame } from "../layout";
import { navigate, type Cleanup } from "../router";
import { maskLogits } from "./mask_input";
import { maskColour } from "./masks";
import { decodeRle, encodeRle } from "./rle";
import { saver, type SaveEvent } from "./saver";
import { helpPanel } from "./shortcuts";
import {
  AnnotateStore,
  candidateLogits,
  defaultCandidate,
  EMPTY,
  isAmbiguous,
  isEmpty,
  type Stroke,
  type WorkingMask,
} from "./store";
import { composeMask, rleMask, AnnotateView, type SavedLayer } from "./view";

const LOCK_REFRESH_MS = 60_000;
const HOVER_THROTTLE_MS = 15;
const DRAG_THRESHOLD_PX = 5;
const VISITED_KEY = "dataengine.visited";

type Tool = "points" | "brush" | "eraser";

export async function annotatePage(container: HTMLElement, params: Record<string, string>): Promise<Cleanup | void> {
  const projectId = Number(params.projectId);
  const { main: root } = await frame(container, "annotate", { projectId, title: "Annotate", fill: true });
  const notice = (...children: (Node | string)[]) =>
    root.replaceChildren(h("div", { class: "page card" }, ...children, h("p", {}, h("a", { href: "/" }, "Back to projects"))));
  if (!params.imageId) {
    root.append(h("p", { class: "page" }, "Finding the next image…"));
    const next = await api.claimNext(projectId);
    if (next) return navigate(`/annotate/${projectId}/${next.id}`, true);
    notice(h("h1", {}, "Nothing left to annotate"), h("p", {}, "Every image of this stage is done or being annotated by someone else."));
    return;
  }
  const imageId = Number(params.imageId);
  let image: ImageInfo;
  try {
    image = await api.claimImage(imageId);
  } catch (error) {
    notice(h("p", { class: "error" }, String((error as Error).message)));
    return;
  }
  rememberVisit(imageId);
  const loading = h("p", { class: "page" }, `Loading ${image.file_name}…`);
  root.append(loading);
  let loaded;
  try {
    loaded = await Promise.all([api.getModel(projectId), api.fetchImageBitmap(imageId), api.fetchEmbedding(imageId), api.listMasks(imageId)]);
  } catch (error) {
    notice(h("p", { class: "error" }, `Could not open ${image.file_name}: ${(error as Error).message}`));
    return;
  }
  const [model, bitmap, embedding, masks] = loaded;
  loading.remove();
  return new AnnotateController(root, projectId, image, model, bitmap, embedding, masks).cleanup;
}

function rememberVisit(imageId: number): void {
  const visited: number[] = JSON.parse(sessionStorage.getItem(VISITED_KEY) ?? "[]");
  if (visited[visited.length - 1] !== imageId) visited.push(imageId);
  sessionStorage.setItem(VISITED_KEY, JSON.stringify(visited.slice(-200)));
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

/** A stable colour slot per mask, the same before and after the server confirmed it. */
function colourIndex(key: string): number {
  let hash = 0;
  for (let i = 0; i < key.length; i++) hash = (hash * 31 + key.charCodeAt(i)) | 0;
  return Math.abs(hash);
}

class AnnotateController {
  private readonly store = new AnnotateStore();
  private readonly decoder = new DecoderClient();
  private readonly view: AnnotateView;
  private readonly originalSize: [number, number];
  private readonly inputSize: [number, number];
  private readonly disposers: (() => void)[] = [];
  private decoderReady: Promise<void>;
  private clickChain: Promise<void> = Promise.resolve();
  private tool: Tool = "points";
  private brushRadius: number;
  /** Prompts clicked but not decoded yet, drawn at once so a click never feels lost. */
  private pending: { points: Point[]; box: number[] | null } | null = null;
  private promptsInFlight = 0;
  private drag: { x: number; y: number; clientX: number; clientY: number; button: number; alt: boolean; moved: boolean } | null = null;
  private stroke: Stroke | null = null;
  private cursor: [number, number] | null = null;
  private lastHover = 0;
  private hoverTimer = 0;
  private hoverToken = 0;
  private masksHidden = false;
  private readonly unsavedMasks = new Map<string, Uint8Array>();
  private readonly saveState = new Map<string, string>();
  /** Accepted corrections the server has not confirmed yet: client id -> the saved mask each replaces (hidden meanwhile). */
  private readonly replacing = new Map<string, number>();

  // Side panel elements.
  private readonly status = h("div", { class: "muted", "data-testid": "decoder-status" }, "decoder: loading…");
  private readonly saveStatus = h("div", { class: "save-status", "aria-live": "polite" });
  private readonly candidates = h("div", { class: "row candidates" });
  private readonly tools = h("div", { class: "row tools" });
  private readonly maskList = h("ul", { class: "masks" });
  private readonly undoButton = h("button", { title: "Ctrl+Z", onclick: () => this.store.undo() }, "Undo");
  private readonly redoButton = h("button", { title: "Ctrl+Shift+Z", onclick: () => this.store.redo() }, "Redo");
  private help: HTMLElement | null = null;

  constructor(
    private readonly root: HTMLElement,
    private readonly projectId: number,
    private readonly image: ImageInfo,
    private readonly model: ModelVersion,
    bitmap: ImageBitmap,
    embedding: Embedding,
    masks: MaskOut[],
  ) {
    this.originalSize = embedding.originalSize;
    this.inputSize = embedding.inputSize;
    this.brushRadius = Math.max(2, Math.round(Math.max(...this.originalSize) / 100));
    for (const mask of masks) this.store.saved.set(mask.id, mask);

    const stage = h("div", { class: "stage", "data-testid": "stage" });
    this.view = new AnnotateView(stage, this.originalSize, this.inputSize);
    root.append(h("div", { class: "annotate" }, stage, this.sidePanel()));
    this.view.fit();
    this.view.drawImage(bitmap);
    const refit = () => (this.view.fit(), this.view.drawImage(bitmap), this.render());
    this.listen(window, "resize", refit);

    this.decoderReady = this.startDecoder(embedding);
    this.bindPointer();
    this.listen(window, "keydown", (e) => this.onKey(e as KeyboardEvent));
    this.disposers.push(this.store.subscribe(() => this.render()));
    this.disposers.push(saver.subscribe((e) => this.onSave(e)));
    const lock = window.setInterval(
      () =>
        void api.claimImage(image.id).catch((error) => {
          if (error instanceof api.ApiError && error.status === 409) this.status.textContent = `lock lost: ${error.message}`;
        }),
      LOCK_REFRESH_MS,
    );
    this.disposers.push(() => clearInterval(lock));
    for (const p of saver.pending(image.id)) this.restorePending(p.body);
    this.render();
  }

  readonly cleanup = (): void => {
    for (const dispose of this.disposers) dispose();
    this.decoder.terminate();
  };

  private listen(target: EventTarget, type: string, handler: (e: Event) => void): void {
    target.addEventListener(type, handler);
    this.disposers.push(() => target.removeEventListener(type, handler));
  }

  private async startDecoder(embedding: Embedding): Promise<void> {
    // The worker cannot send our bearer token: fetch the graphs here and hand them over as blob URLs.
    // The split pair (per-image graph run once below, per-click graph per click) when the version
    // has it, else the one graph.
    const { click_graph_url: clickUrl, image_graph_url: imageUrl } = this.model;
    const split = clickUrl !== null && imageUrl !== null;
    const urls: string[] = [];
    try {
      const graphs = await Promise.all((split ? [clickUrl, imageUrl] : [this.model.decoder_url]).map(api.fetchBytes));
      urls.push(...graphs.map((bytes) => URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }))));
      const loaded = await this.decoder.load(urls[0], { imageGraphUrl: urls[1] });
      await this.decoder.setEmbedding(embedding.data, this.originalSize, this.inputSize);
      const mode = split ? "split" : "single";
      this.status.textContent = `decoder: ready (${mode} graph, ${loaded.numThreads} thread${loaded.numThreads > 1 ? "s" : ""})`;
      this.status.dataset.decoderMode = mode;
      this.status.dataset.ready = "true";
    } catch (error) {
      this.status.textContent = `decoder failed: ${(error as Error).message}`;
      this.status.className = "error";
      throw error;
    } finally {
      urls.forEach((url) => URL.revokeObjectURL(url));
    }
  }

  // ---- side panel -------------------------------------------------------------------------------

  private sidePanel(): HTMLElement {
    const model = this.model;
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
    const previous = h("button", { title: "Shift+N", onclick: () => this.previousImage() }, "◀ Previous");
    const next = h("button", { class: "primary", title: "N", onclick: () => void this.nextImage() }, "Done, next ▶");
    return h(
      "aside",
      {},
      h("div", { class: "row" }, h("button", { class: "link", title: "?", onclick: () => this.toggleHelp() }, "Shortcuts (?)")),
      h("div", {}, h("strong", { "data-testid": "file-name" }, this.image.file_name), h("div", { class: "muted" }, `${this.originalSize[1]}×${this.originalSize[0]} px`)),
      h("div", { "data-testid": "model-version" }, `Model: ${model.name} · ${model.architecture} · ${model.origin}`),
      banner,
      this.status,
      this.tools,
      h("div", {}, h("div", { class: "muted" }, "Candidates (Tab, 1 2 3)"), this.candidates),
      h("div", { class: "row" }, this.undoButton, this.redoButton, h("button", { title: "Esc", onclick: () => this.store.clear() }, "Clear"), h("button", { class: "primary", title: "Enter", "data-testid": "accept", onclick: () => this.accept() }, "Accept")),
      this.saveStatus,
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

  // ---- rendering --------------------------------------------------------------------------------

  private render(): void {
    const working = this.store.working;
    this.drawWorking();
    this.drawUi();
    this.view.drawSaved(this.layers());
    this.renderTools();
    this.renderCandidates(working);
    this.renderMaskList();
    this.undoButton.disabled = !this.store.canUndo();
    this.redoButton.disabled = !this.store.canRedo();
  }

  /** The working mask on the overlay; a correction shows the mask it starts from before any edit. */
  private drawWorking(state: WorkingMask = this.store.working): void {
    const base = this.store.correcting?.pixels ?? null;
    this.view.drawWorking(isEmpty(state) && base === null ? null : state, false, base);
  }

  private drawUi(): void {
    const working = this.store.working;
    const points = this.pending?.points ?? working.points;
    let box: readonly number[] | null = this.pending?.box ?? working.box;
    if (this.drag?.moved && this.cursor) box = boxFrom(this.drag.x, this.drag.y, ...this.cursor);
    const brush = this.tool !== "points" && this.cursor ? { x: this.cursor[0], y: this.cursor[1], radius: this.brushRadius } : null;
    this.view.drawUi(points, box, brush);
  }

  /** Saved masks still on the image: not replaced by an accepted correction (saved or on its way). */
  private currentSaved(): MaskOut[] {
    const replaced = new Set(this.replacing.values());
    return [...this.store.saved.values()].filter((mask) => !replaced.has(mask.id));
  }

  private layers(): SavedLayer[] {
    const layers: SavedLayer[] = [];
    for (const mask of this.currentSaved()) {
      const key = savedKey(mask);
      if (this.masksHidden || this.store.hidden.has(key)) continue;
      const unsaved = mask.client_id ? this.unsavedMasks.get(mask.client_id) : undefined;
      // The mask being corrected stays underneath, dashed, to compare the correction with.
      const dashed = mask.source !== "manual" || this.store.correcting?.maskId === mask.id;
      layers.push({ key, mask: unsaved ? () => unsaved : rleMask(mask.rle), colourIndex: colourIndex(key), prefilled: dashed });
    }
    for (const [clientId, mask] of this.unsavedMasks) {
      if ([...this.store.saved.values()].some((m) => m.client_id === clientId)) continue;
      if (this.masksHidden || this.store.hidden.has(clientId)) continue;
      layers.push({ key: clientId, mask: () => mask, colourIndex: colourIndex(clientId), prefilled: false });
    }
    return layers;
  }

  private renderTools(): void {
    const button = (tool: Tool, label: string, key: string) =>
      h("button", { "aria-pressed": String(this.tool === tool), title: key, onclick: () => this.setTool(tool) }, label);
    this.tools.replaceChildren(
      button("points", "Points", "V"),
      button("brush", "Brush", "B"),
      button("eraser", "Eraser", "E"),
      h("span", { class: "muted" }, `size ${this.brushRadius}px`),
    );
  }

  private renderCandidates(working: WorkingMask): void {
    const decoded = working.decoded;
    if (!decoded) {
      const hint = this.store.correcting ? "click, brush or erase to correct the mask" : "click on an object";
      this.candidates.replaceChildren(h("span", { class: "muted" }, hint));
      return;
    }
    const tokens = this.candidateTokens(working);
    this.candidates.replaceChildren(
      ...tokens.map((t) =>
        h(
          "button",
          { "aria-pressed": String(working.candidate === t), "data-token": t, onclick: () => this.selectCandidate(t) },
          `${t === 0 ? "refined" : t} · IoU ${decoded.iou[t].toFixed(2)}`,
        ),
      ),
    );
  }

  private renderMaskList(): void {
    const items: HTMLElement[] = [];
    const entry = (key: string, label: string, state: string, actions: HTMLElement[]) => {
      const [r, g, b] = colourOf(key);
      const visible = h("input", { type: "checkbox", title: "visible" });
      visible.checked = !this.store.hidden.has(key);
      visible.addEventListener("change", () => {
        if (visible.checked) this.store.hidden.delete(key);
        else this.store.hidden.add(key);
        this.render();
      });
      items.push(
        h(
          "li",
          { "data-mask": key },
          visible,
          h("span", { class: "swatch", style: `background: rgb(${r} ${g} ${b})` }),
          h("span", {}, label),
          h("span", { class: "muted" }, state),
          ...actions,
        ),
      );
    };
    const action = (label: string, title: string, onclick: () => void) => h("button", { class: "link", title, onclick }, label);
    for (const mask of this.currentSaved()) {
      const origin = mask.source === "manual" ? "" : ` (${mask.source}, pre-filled)`;
      const correcting = this.store.correcting?.maskId === mask.id;
      entry(savedKey(mask), `#${mask.id} · ${mask.area} px${origin}`, correcting ? "correcting: Enter saves, Esc cancels" : "", [
        ...(correcting ? [] : [action("correct", "correct this mask (C with the cursor over it)", () => this.correct(mask))]),
        action("delete", "delete this mask", () => void this.deleteSaved(mask)),
      ]);
    }
    for (const clientId of this.unsavedMasks.keys()) {
      if ([...this.store.saved.values()].some((m) => m.client_id === clientId)) continue;
      const replaces = this.replacing.get(clientId);
      entry(clientId, replaces === undefined ? "new mask" : `correction of #${replaces}`, this.saveState.get(clientId) ?? "saving…", []);
    }
    this.maskList.replaceChildren(...items);
  }

  // ---- prompts ----------------------------------------------------------------------------------

  private setTool(tool: Tool): void {
    this.tool = tool;
    this.drawWorking();
    this.render();
  }

  private bindPointer(): void {
    const ui = this.view.ui;
    this.listen(ui, "contextmenu", (e) => e.preventDefault());
    this.listen(ui, "pointerdown", (event) => {
      const e = event as PointerEvent;
      e.preventDefault();
      ui.setPointerCapture(e.pointerId);
      const [x, y] = this.view.toImage(e.clientX, e.clientY);
      if (this.tool === "points") {
        this.drag = { x, y, clientX: e.clientX, clientY: e.clientY, button: e.button, alt: e.altKey, moved: false };
      } else {
        this.stroke = { mode: this.tool === "brush" ? "brush" : "eraser", radius: this.brushRadius, points: [[x, y]] };
        this.drawStroke();
      }
    });
    this.listen(ui, "pointermove", (event) => {
      const e = event as PointerEvent;
      this.cursor = this.view.toImage(e.clientX, e.clientY);
      if (this.drag && !this.drag.moved && Math.hypot(e.clientX - this.drag.clientX, e.clientY - this.drag.clientY) > DRAG_THRESHOLD_PX) {
        this.drag.moved = true;
      }
      if (this.stroke) {
        this.stroke.points.push(this.cursor);
        this.drawStroke();
      } else if (!this.drag) {
        this.hover();
      }
      this.drawUi();
    });
    this.listen(ui, "pointerup", (event) => {
      const e = event as PointerEvent;
      const [x, y] = this.view.toImage(e.clientX, e.clientY);
      if (this.drag) {
        const drag = this.drag;
        this.drag = null;
        if (drag.moved) this.addPrompt({ box: boxFrom(drag.x, drag.y, x, y) });
        else this.addPrompt({ point: { x: drag.x, y: drag.y, label: drag.button === 2 || drag.alt ? 0 : 1 } });
      } else if (this.stroke) {
        const stroke = this.stroke;
        this.stroke = null;
        this.store.push({ ...this.store.working, strokes: [...this.store.working.strokes, stroke] });
      }
    });
    this.listen(ui, "pointerleave", () => {
      this.cursor = null;
      this.hoverToken++;
      if (isEmpty(this.store.working)) this.drawWorking();
      this.drawUi();
    });
  }

  /** Live feedback while a stroke is drawn: the working mask with the stroke so far. */
  private drawStroke(): void {
    const working = this.store.working;
    this.drawWorking({ ...working, strokes: [...working.strokes, this.stroke!] });
  }

  /** Previews the mask a click here would give, while nothing is prompted yet (throttled, latest wins). */
  private hover(): void {
    if (this.tool !== "points" || !isEmpty(this.store.working) || this.store.correcting || this.pending || !this.cursor) return;
    const now = performance.now();
    clearTimeout(this.hoverTimer);
    if (now - this.lastHover < HOVER_THROTTLE_MS) {
      this.hoverTimer = window.setTimeout(() => this.hover(), HOVER_THROTTLE_MS - (now - this.lastHover));
      return;
    }
    this.lastHover = now;
    const token = ++this.hoverToken;
    const [x, y] = this.cursor;
    const prompt = { points: [{ x, y, label: 1 as const }] };
    void this.decoderReady
      .then(() => this.decoder.decode(prompt, { hover: true }))
      .then((decoded) => {
        if (token !== this.hoverToken || !isEmpty(this.store.working) || this.pending) return;
        const state = { ...EMPTY, ...prompt, decoded, candidate: defaultCandidate({ ...prompt, box: null }, decoded) };
        this.view.drawWorking(state, true);
      })
      .catch((error) => {
        if (!(error instanceof DecodeSuperseded)) this.status.textContent = `decoder: ${(error as Error).message}`;
      });
  }

  /**
   * A click or box: decoded with the previous logits of the shown candidate as mask input (the first
   * one of a correction: the mask being corrected, so it refines that mask). Clicks are chained, so a
   * fast second click refines the result of the first, never a stale state.
   */
  private addPrompt(add: { point?: Point; box?: [number, number, number, number] }): void {
    this.hoverToken++;
    const base = this.pending ?? { points: [...this.store.working.points], box: this.store.working.box ? [...this.store.working.box] : null };
    this.pending = { points: add.point ? [...base.points, add.point] : base.points, box: add.box ?? base.box };
    this.promptsInFlight++;
    this.drawUi();
    this.clickChain = this.clickChain.then(async () => {
      const previous = this.store.working;
      const correcting = this.store.correcting;
      const next = {
        points: add.point ? [...previous.points, add.point] : previous.points,
        box: add.box ?? previous.box,
      };
      try {
        await this.decoderReady;
        const decoded = await this.decoder.decode({ points: next.points, box: next.box ?? undefined, maskInput: this.maskInput(previous) });
        // With the corrected mask as mask input a prompt is not ambiguous: the single-mask token refines it.
        this.store.push({ ...previous, ...next, decoded, candidate: correcting ? 0 : defaultCandidate(next, decoded) });
      } catch (error) {
        this.status.textContent = `decoder: ${(error as Error).message}`;
      }
      if (--this.promptsInFlight === 0) this.pending = null;
      this.drawUi();
    });
  }

  /** The decoder's mask input for the next prompt: the shown candidate, or the mask being corrected before any decode. */
  private maskInput(previous: WorkingMask): Float32Array | undefined {
    const correcting = this.store.correcting;
    if (previous.decoded || !correcting) return candidateLogits(previous);
    const full = composeMask(previous, this.originalSize, this.inputSize, ...this.originalSize, correcting.pixels);
    return maskLogits(full, this.originalSize, this.inputSize);
  }

  /** One ambiguous click answers with three candidates, unless it refines a mask being corrected. */
  private candidateTokens(working: WorkingMask): number[] {
    return isAmbiguous(working) && !this.store.correcting ? [1, 2, 3] : [0, 1, 2, 3];
  }

  private selectCandidate(token: number): void {
    const working = this.store.working;
    if (!working.decoded || working.candidate === token) return;
    this.store.replace({ ...working, candidate: token });
  }

  private cycleCandidate(): void {
    const working = this.store.working;
    if (!working.decoded) return;
    const tokens = this.candidateTokens(working);
    this.selectCandidate(tokens[(tokens.indexOf(working.candidate) + 1) % tokens.length]);
  }

  // ---- accept, save, delete ---------------------------------------------------------------------

  /**
   * Encodes the working mask at full resolution and hands it to the saver (which never drops it). A
   * correction is saved with `replaces_mask_id`; the mask it replaces leaves the view at once.
   */
  private accept(): void {
    void this.clickChain.then(() => {
      const working = this.store.working;
      const correcting = this.store.correcting;
      if (isEmpty(working)) {
        if (correcting) {
          this.store.clear();
          this.saveStatus.textContent = `#${correcting.maskId} unchanged`;
          this.saveStatus.dataset.state = "";
        }
        return;
      }
      const [height, width] = this.originalSize;
      const mask = composeMask(working, this.originalSize, this.inputSize, height, width, correcting?.pixels ?? null);
      if (!mask.some((v) => v)) {
        this.saveStatus.textContent = correcting ? "empty mask: nothing to save (delete the mask instead)" : "empty mask: nothing to save";
        this.saveStatus.dataset.state = "";
        return;
      }
      const clientId = newClientId();
      this.unsavedMasks.set(clientId, mask);
      if (correcting) this.replacing.set(clientId, correcting.maskId);
      saver.enqueue(this.image.id, {
        ...(correcting ? { replaces_mask_id: correcting.maskId } : {}),
        client_id: clientId,
        rle: encodeRle(mask, height, width),
        prompts: {
          points: [...working.points],
          box: working.box && [...working.box],
          candidate: working.decoded ? working.candidate : null,
          strokes: working.strokes.length,
        },
        seconds_spent: Math.round(this.store.secondsSpent() * 10) / 10,
        clicks: this.store.actions,
      });
      this.store.clear();
    });
  }

  /** A mask accepted earlier (this tab or a previous one) that the server has not confirmed yet. */
  private restorePending(body: MaskCreate): void {
    this.unsavedMasks.set(body.client_id, rleMask(body.rle)());
    this.saveState.set(body.client_id, "not saved yet");
    if (body.replaces_mask_id != null) this.replacing.set(body.client_id, body.replaces_mask_id);
  }

  private onSave(event: SaveEvent): void {
    if (!this.unsavedMasks.has(event.clientId)) return;
    const status = this.saveStatus;
    switch (event.kind) {
      case "saving":
        this.saveState.set(event.clientId, "saving…");
        status.textContent = "saving…";
        status.dataset.state = "saving";
        break;
      case "saved": {
        this.store.saved.set(event.mask.id, event.mask);
        this.saveState.delete(event.clientId);
        // The server hid the mask this one corrects.
        const replaced = this.replacing.get(event.clientId);
        if (replaced !== undefined) this.store.saved.delete(replaced);
        this.replacing.delete(event.clientId);
        if (saver.pending(this.image.id).length === 0) {
          status.textContent = "saved";
          status.dataset.state = "saved";
        }
        break;
      }
      case "retrying":
        this.saveState.set(event.clientId, "not saved yet, retrying");
        status.textContent = `not saved yet (${event.error}); retrying in ${Math.round(event.delayMs / 1000)} s`;
        status.dataset.state = "pending";
        break;
      case "rejected":
        this.saveState.set(event.clientId, `refused: ${event.error}`);
        this.replacing.delete(event.clientId); // the mask it would have replaced is still there
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
    void this.clickChain.then(() => {
      if (!isEmpty(this.store.working) && !confirm("Discard the mask you have not accepted?")) return;
      this.hoverToken++;
      this.store.correct(mask.id, decodeRle(mask.rle));
    });
  }

  /** The saved mask under the cursor that is drawn (the newest where masks overlap), for C. */
  private savedMaskUnderCursor(): MaskOut | null {
    if (!this.cursor || this.masksHidden) return null;
    const [x, y] = this.cursor.map(Math.floor);
    const width = this.originalSize[1];
    const hit = (mask: MaskOut) => {
      const [bx, by, bw, bh] = mask.bbox;
      return x >= bx && x < bx + bw && y >= by && y < by + bh && decodeRle(mask.rle)[y * width + x] === 1;
    };
    const shown = this.currentSaved().filter((mask) => !this.store.hidden.has(savedKey(mask)));
    return shown.reverse().find(hit) ?? null;
  }

  private async deleteSaved(mask: MaskOut): Promise<void> {
    try {
      await api.deleteMask(mask.id);
      if (this.store.correcting?.maskId === mask.id) this.store.clear();
      this.store.saved.delete(mask.id);
      if (mask.client_id) this.unsavedMasks.delete(mask.client_id);
      this.render();
    } catch (error) {
      this.saveStatus.textContent = `delete failed: ${(error as Error).message}`;
    }
  }

  private toggleAll(): void {
    this.masksHidden = !this.masksHidden;
    this.render();
  }

  // ---- navigation -------------------------------------------------------------------------------

  private async nextImage(): Promise<void> {
    if (!isEmpty(this.store.working) && !confirm("Discard the mask you have not accepted?")) return;
    this.saveStatus.textContent = "waiting for saves…";
    await saver.flushed(this.image.id);
    await api.markDone(this.image.id);
    navigate(`/annotate/${this.projectId}`);
  }

  private previousImage(): void {
    const visited: number[] = JSON.parse(sessionStorage.getItem(VISITED_KEY) ?? "[]");
    const here = visited.lastIndexOf(this.image.id);
    const previous = here > 0 ? visited[here - 1] : undefined;
    if (previous === undefined) {
      this.saveStatus.textContent = "no previous image in this session";
      return;
    }
    sessionStorage.setItem(VISITED_KEY, JSON.stringify(visited.slice(0, here)));
    void api.releaseImage(this.image.id).catch(() => undefined);
    navigate(`/annotate/${this.projectId}/${previous}`);
  }

  // ---- keyboard ---------------------------------------------------------------------------------

  private onKey(e: KeyboardEvent): void {
    if ((e.target as HTMLElement | null)?.tagName === "INPUT") return;
    const ctrl = e.ctrlKey || e.metaKey;
    const key = e.key;
    const handled = (() => {
      if (ctrl && (key === "z" || key === "Z")) return e.shiftKey ? this.store.redo() : this.store.undo(), true;
      if (ctrl && key === "y") return this.store.redo(), true;
      if (ctrl || e.altKey) return false;
      switch (key) {
        case "Enter": this.accept(); return true;
        case "Escape": this.help ? this.toggleHelp() : this.store.clear(); return true;
        case "Tab": this.cycleCandidate(); return true;
        case "1": case "2": case "3": this.selectCandidate(Number(key)); return true;
        case "v": case "V": this.setTool("points"); return true;
        case "b": case "B": this.setTool("brush"); return true;
        case "e": case "E": this.setTool("eraser"); return true;
        case "[": this.brushRadius = Math.max(1, Math.round(this.brushRadius / 1.25)); this.render(); return true;
        case "]": this.brushRadius = Math.min(500, Math.round(this.brushRadius * 1.25) + 1); this.render(); return true;
        case "h": case "H": this.toggleAll(); return true;
        case "c": case "C": {
          const mask = this.savedMaskUnderCursor();
          if (mask) this.correct(mask);
          return true;
        }
        case "n": void this.nextImage(); return true;
        case "N": this.previousImage(); return true;
        case "?": this.toggleHelp(); return true;
        default: return false;
      }
    })();
    if (handled) e.preventDefault();
  }
}

function boxFrom(x0: number, y0: number, x1: number, y1: number): [number, number, number, number] {
  return [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
}

/** The key of a saved mask's layer, list entry and visibility: its client id when the browser made it. */
function savedKey(mask: MaskOut): string {
  return mask.client_id ?? `id:${mask.id}`;
}

function colourOf(key: string): [number, number, number] {
  return maskColour(colourIndex(key));
}
