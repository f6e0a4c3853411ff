/**
 * The mask editor the annotate and review pages share: the image's canvases, the working mask with
 * undo/redo, the point/brush/eraser tools, clicks chained through the decoder, the hover preview,
 * and the editing shortcuts (Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y, V B E, [ ]). A page keeps what is its
 * own (which masks are saved and how, the review queue) and draws its saved masks on `view.masks`.
 * "Show uncovered" (`coverageButton`, `toggleUncovered`) tints what none of the masks a page hands
 * to `drawCoverage` covers, and `uncoveredText` gives the uncovered share.
 *
 * The editor lives as long as its page (the annotate page's: its whole session of images); `open`
 * shows the next image in it (the store starts afresh, the tool stays), and the decoder it is given
 * outlives images (see decoder.ts).
 */
import type { Embedding, Point } from "../api/types";
import { h } from "../dom";
import { DecodeSuperseded } from "../inference/decoder_client";
import type { DecoderHost, VersionDecoder } from "./decoder";
import { maskLogits } from "./mask_input";
import type { Size } from "./masks";
import { renderCandidates, renderTools } from "./panel";
import { Gestures, type Box, type Tool } from "./pointer";
import { candidateLogits, defaultCandidate, EditorStore, EMPTY, isAmbiguous, isEmpty, type WorkingMask } from "./store";
import { composeMask, EditorView, type SavedLayer } from "./view";

const HOVER_THROTTLE_MS = 15;

export interface EditorImage {
  id: number;
  bitmap: ImageBitmap;
  /** [h, w] of the image as shown, the frame of every prompt and mask. */
  originalSize: Size;
  /** [h, w] of the image resized to longest side 1024 (the embedding's input size). */
  inputSize: Size;
  /** The embedding, when the page has it (or is fetching it) already; else the decoder fetches it at the first decode. */
  embedding?: Promise<Embedding>;
}

export interface EditorOptions {
  /** A drag draws a box prompt (annotate); without, a press is a click where it went down (review). */
  boxes: boolean;
  /** Editing at start: the review page edits only in fix mode, and shows no working mask outside it. */
  editing: boolean;
  /** Presses are ignored while this holds (the review page while a decision is on its way). */
  paused?: () => boolean;
}

export class MaskEditor {
  readonly store = new EditorStore();
  /** The decoder's state and errors ("decoder-status": the browser tests wait for `data-ready`,
   * `data-image-id` names the image it is ready for and `data-model-version` the version decoding it). */
  readonly status = h("div", { class: "muted", "data-testid": "decoder-status" });
  readonly toolbar = h("div", { class: "row tools" });
  readonly candidates = h("div", { class: "row candidates" });
  readonly undoButton = h("button", { title: "Ctrl+Z", onclick: () => this.store.undo() }, "Undo");
  readonly redoButton = h("button", { title: "Ctrl+Shift+Z", onclick: () => this.store.redo() }, "Redo");
  /** "Show uncovered": tints every pixel no live mask covers (the page's key: U). */
  readonly coverageButton = h(
    "button",
    { title: "U", "aria-pressed": "false", "data-testid": "coverage-toggle", onclick: () => this.toggleUncovered() },
    "Show uncovered",
  );
  /** The uncovered share of the image, in `data-fraction` too (0..1). */
  readonly uncoveredText = h("span", { class: "muted", "data-testid": "uncovered" });
  private showUncovered = false;
  private coverageLayers: SavedLayer[] = [];
  private image: EditorImage | null = null;
  private canvases: EditorView | null = null;
  private gestures: Gestures | null = null;
  private editing: boolean;
  private tool: Tool = "points";
  private brushRadius = 5;
  private clickChain: Promise<void> = Promise.resolve();
  /** Prompts clicked but not decoded yet, drawn at once so a click never feels lost. */
  private pending: { points: Point[]; box: Box | null } | null = null;
  private promptsInFlight = 0;
  private lastHover = 0;
  private hoverTimer = 0;
  private hoverToken = 0;
  private epoch = this.store.epoch;
  private readonly listeners = new Set<() => void>();
  private readonly disposers: (() => void)[] = [];

  constructor(
    private readonly stage: HTMLElement,
    private readonly decoders: DecoderHost,
    private readonly options: EditorOptions,
  ) {
    this.editing = options.editing;
    const refit = () => this.canvases && (this.fit(), this.changed());
    window.addEventListener("resize", refit);
    this.disposers.push(() => window.removeEventListener("resize", refit));
    this.disposers.push(this.store.subscribe(() => this.onStore()));
  }

  /** The canvases of the image shown; null before `open` and after `close`. */
  get view(): EditorView | null {
    return this.canvases;
  }

  /** The pointer over the image (original pixels), null when it is outside. */
  get cursor(): [number, number] | null {
    return this.gestures?.cursor ?? null;
  }

  /** Shows `image` in the stage (which must be laid out) with a fresh working mask. */
  open(image: EditorImage): void {
    this.close();
    this.image = image;
    this.canvases = new EditorView(this.stage, image.originalSize, image.inputSize);
    this.gestures = new Gestures(
      this.canvases,
      {
        press: () => (this.editing && !this.options.paused?.() ? { tool: this.tool, radius: this.brushRadius } : null),
        click: (point) => this.addPrompt({ point }),
        box: (box) => this.addPrompt({ box }),
        stroke: (stroke) => this.store.push({ ...this.store.working, strokes: [...this.store.working.strokes, stroke] }),
        moved: (idle) => this.pointerMoved(idle),
        left: () => this.pointerLeft(),
      },
      this.options.boxes,
    );
    this.brushRadius = Math.max(2, Math.round(Math.max(...image.originalSize) / 100));
    this.fit();
    this.store.clear(); // redraws
  }

  /** Empties the stage (the review page when nothing is left). */
  close(): void {
    this.gestures?.dispose();
    this.gestures = null;
    this.canvases = null;
    this.image = null;
    this.coverageLayers = [];
    this.uncoveredText.textContent = "";
    delete this.uncoveredText.dataset.fraction;
    this.stage.replaceChildren();
  }

  dispose(): void {
    this.close();
    clearTimeout(this.hoverTimer);
    for (const dispose of this.disposers) dispose();
    this.listeners.clear();
  }

  /** Calls `listener` after every change the editor drew (working mask, tool, brush size, resize). */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Starts editing: a fresh working mask, or one that corrects `correcting` (starting as its pixels). */
  startEditing(correcting?: { maskId: number; pixels: Uint8Array }): void {
    this.editing = true;
    if (correcting) this.store.correct(correcting.maskId, correcting.pixels);
    else this.store.clear();
  }

  /** Stops editing: the working mask is dropped and no longer drawn; presses are ignored. */
  stopEditing(): void {
    this.editing = false;
    this.store.clear();
  }

  drawSaved(layers: SavedLayer[]): void {
    this.canvases?.drawSaved(layers);
  }

  /** The masks that count as covering the image (every live one, hidden or not), for "Show uncovered" and the share. */
  drawCoverage(layers: SavedLayer[]): void {
    this.coverageLayers = layers;
    this.paintCoverage();
  }

  toggleUncovered(): void {
    this.showUncovered = !this.showUncovered;
    this.coverageButton.setAttribute("aria-pressed", String(this.showUncovered));
    this.paintCoverage();
  }

  private paintCoverage(): void {
    const view = this.canvases;
    if (!view) return;
    const fraction = view.drawCoverage(this.coverageLayers, this.showUncovered);
    this.uncoveredText.textContent = `uncovered ${(fraction * 100).toFixed(1)}%`;
    this.uncoveredText.dataset.fraction = fraction.toFixed(5);
  }

  /** Resolves once every click made so far is decoded (or failed): accept and submit wait for it. */
  settled(): Promise<void> {
    return this.clickChain;
  }

  /** The working mask at full resolution, uint8 [h, w] row-major: what a page saves. */
  fullMask(): Uint8Array {
    const image = this.image;
    if (!image) throw new Error("no image open");
    const [height, width] = image.originalSize;
    return composeMask(this.store.working, image.originalSize, image.inputSize, height, width, this.store.correcting?.pixels ?? null);
  }

  /** Loads the decoder for the image shown (if it is not yet), reporting progress in `status`. */
  loadDecoder(): void {
    const image = this.image;
    if (!image) return;
    this.status.textContent = "decoder: loading…";
    this.status.className = "muted";
    delete this.status.dataset.ready;
    delete this.status.dataset.imageId;
    delete this.status.dataset.modelVersion;
    this.decoderFor(image).catch((error: Error) => {
      if (this.image !== image) return;
      this.status.textContent = `decoder failed (clicks do nothing; brush and eraser work): ${error.message}`;
      this.status.className = "error";
    });
  }

  // ---- tools and candidates ---------------------------------------------------------------------

  setTool(tool: Tool): void {
    this.tool = tool;
    this.changed();
  }

  /** The candidates offered: one ambiguous click answers with three, unless it refines an existing mask. */
  candidateTokens(working: WorkingMask = this.store.working): number[] {
    return isAmbiguous(working) && !this.store.correcting ? [1, 2, 3] : [0, 1, 2, 3];
  }

  selectCandidate(token: number): void {
    const working = this.store.working;
    if (!working.decoded || working.candidate === token) return;
    this.store.replace({ ...working, candidate: token });
  }

  cycleCandidate(): void {
    const working = this.store.working;
    if (!working.decoded) return;
    const tokens = this.candidateTokens(working);
    this.selectCandidate(tokens[(tokens.indexOf(working.candidate) + 1) % tokens.length]);
  }

  /** The editing shortcuts; true when `e` was one (the page then prevents its default). */
  handleKey(e: KeyboardEvent): boolean {
    const ctrl = e.ctrlKey || e.metaKey;
    const key = e.key;
    if (ctrl && (key === "z" || key === "Z")) return e.shiftKey ? this.store.redo() : this.store.undo(), true;
    if (ctrl && key === "y") return this.store.redo(), true;
    if (ctrl || e.altKey) return false;
    switch (key) {
      case "v": case "V": this.setTool("points"); return true;
      case "b": case "B": this.setTool("brush"); return true;
      case "e": case "E": this.setTool("eraser"); return true;
      case "[": this.brushRadius = Math.max(1, Math.round(this.brushRadius / 1.25)); this.changed(); return true;
      case "]": this.brushRadius = Math.min(500, Math.round(this.brushRadius * 1.25) + 1); this.changed(); return true;
      default: return false;
    }
  }

  // ---- drawing ----------------------------------------------------------------------------------

  private fit(): void {
    this.canvases!.fit();
    this.canvases!.drawImage(this.image!.bitmap);
  }

  private onStore(): void {
    if (this.store.epoch !== this.epoch) {
      // A fresh start: what was clicked for the old working mask is no longer shown.
      this.epoch = this.store.epoch;
      this.pending = null;
      this.hoverToken++;
    }
    this.changed();
  }

  private changed(): void {
    this.drawWorking();
    this.drawUi();
    renderTools(this.toolbar, this.tool, this.brushRadius, (tool) => this.setTool(tool));
    renderCandidates(this.candidates, this.store.working, this.candidateTokens(), this.store.correcting !== null, (t) => this.selectCandidate(t));
    this.undoButton.disabled = !this.store.canUndo();
    this.redoButton.disabled = !this.store.canRedo();
    for (const listener of this.listeners) listener();
  }

  /** The working mask (with the stroke being drawn) on the overlay; a correction shows its base before any edit. */
  private drawWorking(): void {
    const view = this.canvases;
    if (!view) return;
    if (!this.editing) return view.drawWorking(null);
    const working = this.store.working;
    const stroke = this.gestures?.stroke;
    const state = stroke ? { ...working, strokes: [...working.strokes, stroke] } : working;
    const base = this.store.correcting?.pixels ?? null;
    view.drawWorking(isEmpty(state) && base === null ? null : state, false, base);
  }

  /** Clicks (the pending ones too), the box or the box being dragged, and the brush outline. */
  private drawUi(): void {
    const view = this.canvases;
    if (!view) return;
    if (!this.editing) return view.drawUi([], null, null);
    const working = this.store.working;
    const cursor = this.cursor;
    const box = this.gestures?.dragBox ?? this.pending?.box ?? working.box;
    const brush = this.tool !== "points" && cursor ? { x: cursor[0], y: cursor[1], radius: this.brushRadius } : null;
    view.drawUi(this.pending?.points ?? working.points, box, brush);
  }

  private pointerMoved(idle: boolean): void {
    if (this.gestures?.stroke) this.drawWorking();
    else if (idle) this.hover();
    this.drawUi();
  }

  private pointerLeft(): void {
    this.hoverToken++;
    if (isEmpty(this.store.working)) this.drawWorking();
    this.drawUi();
  }

  // ---- decoding ---------------------------------------------------------------------------------

  /**
   * The decoder set to `image`: the one of the version its embedding came from. A failure is retried
   * by the next call. Shows in the status which version decodes it, once it is ready.
   */
  private decoderFor(image: EditorImage): Promise<VersionDecoder> {
    const ready = this.decoders.forImage(image.id, image.embedding);
    void ready.then(
      (decoder) => this.image === image && this.showReady(decoder, image.id),
      () => undefined,
    );
    return ready;
  }

  private showReady({ model, info: { mode, numThreads } }: VersionDecoder, imageId: number): void {
    const threads = `${numThreads} thread${numThreads > 1 ? "s" : ""}`;
    this.status.textContent = `decoder: ready (model #${model.id} ${model.name}, ${model.architecture}; ${mode} graph, ${threads})`;
    this.status.className = "muted";
    this.status.dataset.decoderMode = mode;
    this.status.dataset.ready = "true";
    this.status.dataset.imageId = String(imageId);
    this.status.dataset.modelVersion = String(model.id);
  }

  /** Previews the mask a click here would give, while nothing is prompted yet (throttled, latest wins). */
  private hover(): void {
    const image = this.image;
    const cursor = this.cursor;
    if (!image || !cursor || !this.editing || this.tool !== "points") return;
    if (!isEmpty(this.store.working) || this.store.correcting || this.pending) return;
    const now = performance.now();
    clearTimeout(this.hoverTimer);
    if (now - this.lastHover < HOVER_THROTTLE_MS) {
      this.hoverTimer = window.setTimeout(() => this.hover(), HOVER_THROTTLE_MS - (now - this.lastHover));
      return;
    }
    this.lastHover = now;
    const decoder = this.decoders.current(image.id); // a preview never starts (or retries) a load
    if (!decoder) return;
    const token = ++this.hoverToken;
    const [x, y] = cursor;
    const prompt = { points: [{ x, y, label: 1 as const }] };
    void decoder
      .then((d) => d.client.decode(prompt, { hover: true }))
      .then((decoded) => {
        if (token !== this.hoverToken || this.image !== image || !isEmpty(this.store.working) || this.pending) return;
        const state = { ...EMPTY, ...prompt, decoded, candidate: defaultCandidate({ ...prompt, box: null }, decoded) };
        this.canvases?.drawWorking(state, true);
      })
      .catch((error: Error) => {
        if (!(error instanceof DecodeSuperseded)) this.status.textContent = `decoder: ${error.message}`;
      });
  }

  /**
   * A click or box: decoded with the previous logits of the shown candidate as mask input (the first
   * one of a correction: the mask being corrected, so it refines that mask). Clicks are chained, so a
   * fast second click refines the result of the first, never a stale state; an answer for a working
   * mask that was cleared or replaced meanwhile (Esc, another image) is dropped.
   */
  private addPrompt(add: { point?: Point; box?: Box }): void {
    const image = this.image;
    if (!image) return;
    const epoch = this.store.epoch;
    this.hoverToken++;
    const base = this.pending ?? { points: [...this.store.working.points], box: this.store.working.box ? [...this.store.working.box] : null };
    this.pending = { points: add.point ? [...base.points, add.point] : base.points, box: add.box ?? base.box };
    this.promptsInFlight++;
    this.drawUi();
    this.clickChain = this.clickChain.then(async () => {
      try {
        const decoder = await this.decoderFor(image);
        if (this.store.epoch !== epoch) return;
        const previous = this.store.working;
        const correcting = this.store.correcting;
        const next = { points: add.point ? [...previous.points, add.point] : previous.points, box: add.box ?? previous.box };
        const decoded = await decoder.client.decode({ points: next.points, box: next.box ?? undefined, maskInput: this.maskInput(image, previous) });
        if (this.store.epoch !== epoch) return;
        // With the corrected mask as mask input a prompt is not ambiguous: the single-mask token refines it.
        this.store.push({ ...previous, ...next, decoded, candidate: correcting ? 0 : defaultCandidate(next, decoded) });
      } catch (error) {
        this.status.textContent = `decoder: ${(error as Error).message}`;
      } finally {
        if (--this.promptsInFlight === 0) this.pending = null;
        this.drawUi();
      }
    });
  }

  /** The decoder's mask input for the next prompt: the shown candidate, or the mask being corrected (strokes applied) before any decode. */
  private maskInput(image: EditorImage, previous: WorkingMask): Float32Array | undefined {
    const correcting = this.store.correcting;
    if (previous.decoded || !correcting) return candidateLogits(previous);
    const full = composeMask(previous, image.originalSize, image.inputSize, ...image.originalSize, correcting.pixels);
    return maskLogits(full, image.originalSize, image.inputSize);
  }
}
