/**
 * The review page (/review/:projectId): the sampled auto masks of the fully automatic stage, one at a
 * time over their image, with the generator's predicted IoU and stability score. The reviewer
 * accepts (A), rejects (R), fixes (F: brush, eraser and clicks starting from the mask; Enter submits
 * the fixed mask) or skips (S) it. A running summary shows the paper's quality check: the share of
 * reviewed masks whose review changed them by less than 10% IoU.
 *
 * Each decision is posted once: the page holds one request at a time, remembers the masks it decided,
 * and treats 409 (decided meanwhile, by someone else or by a request whose answer was lost) as done.
 * Skipping moves a cursor (`?after=<mask id>`): skipped masks stay pending and come back after
 * "start over".
 */
import * as api from "../api/client";
import { ApiError } from "../api/client";
import type { Point } from "../api/types";
import { h } from "../dom";
import { frame } from "../layout";
import { DecoderClient } from "../inference/decoder_client";
import { maskColour, paintMask, type Size } from "../annotate/masks";
import { inputSizeOf, maskLogits } from "../annotate/mask_input";
import { encodeRle, decodeRle } from "../annotate/rle";
import { AnnotateStore, candidateLogits, type Stroke } from "../annotate/store";
import { AnnotateView, composeMask } from "../annotate/view";
import type { Cleanup } from "../router";
import { nextForReview, reviewMask, reviewSummary, type ReviewDecision, type ReviewItem } from "./api";

type Mode = "loading" | "review" | "fix" | "done";
type Tool = "points" | "brush" | "eraser";

const AUTO_COLOUR_INDEX = 7;
const FIX_COLOUR: [number, number, number] = [30, 144, 255];

export async function reviewPage(root: HTMLElement, params: Record<string, string>): Promise<Cleanup> {
  const projectId = Number(params.projectId);
  const { main } = await frame(root, "review", { projectId, title: "Review", fill: true });
  const controller = new ReviewController(root, main, projectId);
  void controller.next();
  return controller.cleanup;
}

/** The decoder, its graph loaded once per page and the embedding set once per image. */
class LazyDecoder {
  private client: DecoderClient | null = null;
  private loaded: Promise<DecoderClient> | null = null;
  private imageId: number | null = null;
  private ready: Promise<{ decoder: DecoderClient; inputSize: Size }> | null = null;

  constructor(private readonly projectId: number) {}

  forImage(imageId: number): Promise<{ decoder: DecoderClient; inputSize: Size }> {
    this.loaded ??= this.load();
    if (this.imageId !== imageId || this.ready === null) {
      this.imageId = imageId;
      const loaded = this.loaded;
      this.ready = (async () => {
        const [decoder, embedding] = await Promise.all([loaded, api.fetchEmbedding(imageId)]);
        await decoder.setEmbedding(embedding.data, embedding.originalSize, embedding.inputSize);
        return { decoder, inputSize: embedding.inputSize };
      })();
      this.ready.catch(() => (this.ready = null)); // a failure is retried by the next click
    }
    return this.ready;
  }

  /** The worker cannot send our bearer token: the graphs are fetched here and handed over as blob URLs. */
  private async load(): Promise<DecoderClient> {
    const model = await api.getModel(this.projectId);
    const split = model.click_graph_url !== null && model.image_graph_url !== null;
    const graphs = await Promise.all((split ? [model.click_graph_url!, model.image_graph_url!] : [model.decoder_url]).map(api.fetchBytes));
    const urls = graphs.map((bytes) => URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" })));
    try {
      this.client = new DecoderClient();
      await this.client.load(urls[0], { imageGraphUrl: urls[1] });
      return this.client;
    } catch (error) {
      this.loaded = null;
      throw error;
    } finally {
      urls.forEach((url) => URL.revokeObjectURL(url));
    }
  }

  terminate(): void {
    this.client?.terminate();
  }
}

class ReviewController {
  private mode: Mode = "loading";
  private busy = false;
  private item: ReviewItem | null = null;
  /** The auto mask, uint8 [h, w] row-major, original image frame. */
  private base: Uint8Array | null = null;
  private originalSize: Size = [1, 1];
  private inputSize: Size = [1, 1];
  private view: AnnotateView | null = null;
  private bitmap: { imageId: number; bitmap: ImageBitmap } | null = null;
  private shownAt = 0;
  /** Masks this page decided: never posted again. */
  private readonly decided = new Set<number>();
  /** Skipped masks are those with ids up to this one. */
  private skipAfter = 0;
  private readonly decoder: LazyDecoder;
  private readonly store = new AnnotateStore();
  private clickChain: Promise<void> = Promise.resolve();
  private tool: Tool = "points";
  private brushRadius = 5;
  private cursor: [number, number] | null = null;
  private stroke: Stroke | null = null;
  private readonly disposers: (() => void)[] = [];
  private viewDisposers: (() => void)[] = [];

  private readonly stage = h("div", { class: "stage", "data-testid": "stage" });
  private readonly summary = h("div", { "data-testid": "review-summary" }, "summary: loading…");
  private readonly itemInfo = h("div", { "data-testid": "review-item" });
  private readonly error = h("div", { class: "error", "data-testid": "review-error", role: "alert" });
  private readonly status = h("div", { class: "muted", "data-testid": "review-status", "aria-live": "polite" });
  private readonly decoderStatus = h("div", { class: "muted", "data-testid": "decoder-status" });
  private readonly actions = h("div", { class: "row" });
  private readonly fixPanel = h("div", { "data-testid": "fix-panel" });

  constructor(
    /** The page's root: it carries the mode as `data-review-mode`. */
    private readonly root: HTMLElement,
    main: HTMLElement,
    private readonly projectId: number,
  ) {
    this.decoder = new LazyDecoder(projectId);
    main.append(
      h(
        "div",
        { class: "annotate review" },
        this.stage,
        h(
          "aside",
          {},
          h("strong", {}, "Review auto masks"),
          this.summary,
          this.itemInfo,
          this.actions,
          this.fixPanel,
          this.decoderStatus,
          this.status,
          this.error,
          h("div", { class: "muted" }, "A accept · R reject · F fix · S skip. Fixing: V points, B brush, E eraser, [ ] size, Ctrl+Z undo, Enter submit, Esc cancel."),
        ),
      ),
    );
    this.listen(window, "keydown", (e) => this.onKey(e as KeyboardEvent));
    this.listen(window, "resize", () => this.refit());
    this.disposers.push(this.store.subscribe(() => (this.drawMasks(), this.render())));
    void this.refreshSummary();
    this.render();
  }

  readonly cleanup = (): void => {
    for (const dispose of [...this.disposers, ...this.viewDisposers]) dispose();
    this.decoder.terminate();
  };

  private listen(target: EventTarget, type: string, handler: (e: Event) => void, into = this.disposers): void {
    target.addEventListener(type, handler);
    into.push(() => target.removeEventListener(type, handler));
  }

  // ---- loading ----------------------------------------------------------------------------------

  /** Shows the next pending mask after the skipped ones, or "nothing left". */
  async next(): Promise<void> {
    this.busy = true;
    this.mode = "loading";
    this.render();
    try {
      const item = await nextForReview(this.projectId, this.skipAfter);
      if (item === null) {
        this.item = null;
        this.mode = "done";
        return;
      }
      if (this.bitmap?.imageId !== item.image.id) {
        this.bitmap = { imageId: item.image.id, bitmap: await api.fetchImageBitmap(item.image.id) };
      }
      this.show(item);
    } catch (error) {
      this.showError(`could not load the next mask: ${(error as Error).message}`);
      this.mode = this.item ? "review" : "done";
    } finally {
      this.busy = false;
      this.render();
    }
  }

  private show(item: ReviewItem): void {
    this.item = item;
    this.originalSize = [item.mask.rle.size[0], item.mask.rle.size[1]];
    this.inputSize = inputSizeOf(this.originalSize);
    this.base = decodeRle(item.mask.rle);
    this.brushRadius = Math.max(2, Math.round(Math.max(...this.originalSize) / 100));
    this.store.clear();
    this.mode = "review";
    this.shownAt = performance.now();
    for (const dispose of this.viewDisposers) dispose();
    this.viewDisposers = [];
    this.stage.replaceChildren();
    this.view = new AnnotateView(this.stage, this.originalSize, this.inputSize);
    this.bindPointer(this.view);
    this.refit();
  }

  private refit(): void {
    if (!this.view || !this.bitmap) return;
    this.view.fit();
    this.view.drawImage(this.bitmap.bitmap);
    this.drawMasks();
  }

  private async refreshSummary(): Promise<void> {
    try {
      const s = await reviewSummary(this.projectId);
      const share = s.share_above_threshold === null ? "–" : `${(100 * s.share_above_threshold).toFixed(0)}%`;
      this.summary.replaceChildren(
        h("div", {}, h("strong", {}, `${s.reviewed}`), ` reviewed of ${s.sampled} sampled · ${s.pending} pending`),
        h("div", { class: "muted" }, `accepted ${s.accepted} · fixed ${s.fixed} · rejected ${s.rejected}`),
        h("div", { "data-share": s.share_above_threshold ?? "" }, `IoU above ${s.iou_threshold} after review: ${share}`, h("span", { class: "muted" }, ` (${s.above_threshold}/${s.reviewed}; paper: 94%)`)),
      );
      this.summary.dataset.reviewed = String(s.reviewed);
    } catch (error) {
      this.summary.textContent = `summary unavailable: ${(error as Error).message}`;
    }
  }

  // ---- decisions --------------------------------------------------------------------------------

  private async decide(decision: ReviewDecision): Promise<void> {
    const item = this.item;
    if (this.busy || !item || this.decided.has(item.mask.id)) return;
    this.busy = true;
    this.error.textContent = "";
    this.status.textContent = `${decision.decision}: sending…`;
    this.render();
    const seconds = Math.round((performance.now() - this.shownAt) / 100) / 10;
    try {
      const out = await reviewMask(item.mask.id, decision, seconds);
      this.decided.add(item.mask.id);
      const iou = out.iou === null ? "" : ` (IoU ${out.iou.toFixed(3)})`;
      this.status.textContent = `mask #${item.mask.id} ${PAST[decision.decision]}${iou}`;
    } catch (error) {
      if (error instanceof ApiError && error.status === 409) {
        this.decided.add(item.mask.id);
        this.status.textContent = "";
        this.showError(`mask #${item.mask.id} was not recorded: ${error.message}`);
      } else {
        this.status.textContent = "";
        this.showError(`could not ${decision.decision} mask #${item.mask.id}: ${(error as Error).message}`);
        this.busy = false;
        this.render();
        return;
      }
    }
    void this.refreshSummary();
    await this.next();
  }

  private skip(): void {
    if (this.busy || !this.item || this.mode !== "review") return;
    this.skipAfter = this.item.mask.id;
    this.status.textContent = `mask #${this.item.mask.id} skipped`;
    void this.next();
  }

  private startOver(): void {
    if (this.busy) return;
    this.skipAfter = 0;
    this.error.textContent = "";
    void this.next();
  }

  private showError(message: string): void {
    this.error.textContent = message;
  }

  // ---- fix mode ---------------------------------------------------------------------------------

  private enterFix(): void {
    if (this.busy || this.mode !== "review" || !this.item) return;
    this.mode = "fix";
    this.store.clear(); // redraws
    const imageId = this.item.image.id;
    this.decoderStatus.textContent = "decoder: loading…";
    this.decoder.forImage(imageId).then(
      () => {
        if (this.item?.image.id !== imageId) return;
        this.decoderStatus.textContent = "decoder: ready";
        this.decoderStatus.dataset.ready = "true";
      },
      (error) => {
        this.decoderStatus.textContent = `decoder unavailable (clicks do nothing; brush and eraser work): ${(error as Error).message}`;
      },
    );
    this.render();
  }

  private cancelFix(): void {
    if (this.mode !== "fix" || this.busy) return;
    this.mode = "review";
    this.store.clear(); // redraws
  }

  private submitFix(): void {
    if (this.mode !== "fix" || this.busy || !this.item) return;
    const maskId = this.item.mask.id;
    void this.clickChain.then(() => {
      if (this.item?.mask.id !== maskId || this.mode !== "fix" || !this.base) return;
      const [height, width] = this.originalSize;
      const mask = composeMask(this.store.working, this.originalSize, this.inputSize, height, width, this.base);
      if (!mask.some((v) => v)) {
        this.showError("the fixed mask is empty: reject the mask instead (R after Esc)");
        return;
      }
      void this.decide({ decision: "fix", rle: encodeRle(mask, height, width) });
    });
  }

  /** A click refines the mask: the first with the (stroked) auto mask as SAM's mask input, later ones with the last decode's logits. */
  private addPoint(point: Point): void {
    const item = this.item;
    const base = this.base;
    if (!item || !base) return;
    this.clickChain = this.clickChain.then(async () => {
      try {
        const { decoder, inputSize } = await this.decoder.forImage(item.image.id);
        if (this.item !== item || this.mode !== "fix") return;
        this.inputSize = inputSize;
        const previous = this.store.working;
        const points = [...previous.points, point];
        const maskInput = previous.decoded
          ? candidateLogits(previous)
          : maskLogits(composeMask(previous, this.originalSize, inputSize, ...this.originalSize, base), this.originalSize, inputSize);
        const decoded = await decoder.decode({ points, maskInput });
        if (this.item !== item || this.mode !== "fix") return;
        // With a mask input the prompt is not ambiguous: SAM's single-mask output (token 0) refines it.
        this.store.push({ ...previous, points, decoded, candidate: 0 });
      } catch (error) {
        this.decoderStatus.textContent = `decoder: ${(error as Error).message}`;
      }
    });
  }

  private setTool(tool: Tool): void {
    this.tool = tool;
    this.render();
  }

  private bindPointer(view: AnnotateView): void {
    const ui = view.ui;
    let click: { x: number; y: number; label: 0 | 1 } | null = null;
    this.listen(ui, "contextmenu", (e) => e.preventDefault(), this.viewDisposers);
    this.listen(ui, "pointerdown", (event) => {
      const e = event as PointerEvent;
      if (this.mode !== "fix" || this.busy) return;
      e.preventDefault();
      ui.setPointerCapture(e.pointerId);
      const [x, y] = view.toImage(e.clientX, e.clientY);
      if (this.tool === "points") click = { x, y, label: e.button === 2 || e.altKey ? 0 : 1 };
      else this.stroke = { mode: this.tool, radius: this.brushRadius, points: [[x, y]] };
      this.drawMasks();
    }, this.viewDisposers);
    this.listen(ui, "pointermove", (event) => {
      const e = event as PointerEvent;
      this.cursor = view.toImage(e.clientX, e.clientY);
      if (this.stroke) {
        this.stroke.points.push(this.cursor);
        this.drawMasks();
      } else {
        this.drawUi();
      }
    }, this.viewDisposers);
    this.listen(ui, "pointerup", () => {
      if (click) {
        this.addPoint(click);
        click = null;
      } else if (this.stroke) {
        const stroke = this.stroke;
        this.stroke = null;
        this.store.push({ ...this.store.working, strokes: [...this.store.working.strokes, stroke] });
      }
    }, this.viewDisposers);
    this.listen(ui, "pointerleave", () => {
      this.cursor = null;
      this.drawUi();
    }, this.viewDisposers);
  }

  // ---- rendering --------------------------------------------------------------------------------

  /** Review: the auto mask filled. Fix: the auto mask dashed underneath, the mask being fixed on top. */
  private drawMasks(): void {
    const view = this.view;
    const base = this.base;
    if (!view || !base) return;
    const fixing = this.mode === "fix";
    view.drawSaved([{ key: `auto:${this.item?.mask.id}`, mask: () => base, colourIndex: AUTO_COLOUR_INDEX, prefilled: fixing }]);
    const ctx = view.overlay.getContext("2d")!;
    const [dh, dw] = view.displaySize;
    ctx.clearRect(0, 0, dw, dh);
    if (fixing) {
      const working = this.store.working;
      const state = this.stroke ? { ...working, strokes: [...working.strokes, this.stroke] } : working;
      const mask = composeMask(state, this.originalSize, this.inputSize, dh, dw, base);
      const pixels = ctx.createImageData(dw, dh);
      paintMask(pixels.data, mask, dh, dw, FIX_COLOUR, { fillAlpha: 120, dashed: false });
      ctx.putImageData(pixels, 0, 0);
    }
    this.drawUi();
  }

  private drawUi(): void {
    if (!this.view) return;
    const fixing = this.mode === "fix";
    const brush = fixing && this.tool !== "points" && this.cursor ? { x: this.cursor[0], y: this.cursor[1], radius: this.brushRadius } : null;
    this.view.drawUi(fixing ? this.store.working.points : [], null, brush);
  }

  private render(): void {
    const item = this.item;
    const mode = this.mode;
    this.root.dataset.reviewMode = mode;
    if (mode === "done") {
      this.stage.replaceChildren();
      this.view = null;
      const skipped = this.skipAfter > 0;
      this.itemInfo.replaceChildren(
        h(
          "div",
          {},
          h("h2", { "data-testid": "review-done" }, skipped ? "Nothing left after the masks you skipped" : "Nothing left to review"),
          skipped ? h("button", { "data-action": "start-over", onclick: () => this.startOver() }, "Start over (show skipped masks)") : null,
        ),
      );
      this.actions.replaceChildren();
      this.fixPanel.replaceChildren();
      return;
    }
    if (item) {
      const m = item.mask;
      const [r, g, b] = maskColour(AUTO_COLOUR_INDEX);
      this.itemInfo.dataset.maskId = String(m.id);
      this.itemInfo.replaceChildren(
        h("div", {}, h("span", { class: "swatch", style: `background: rgb(${r} ${g} ${b})` }), h("strong", {}, ` mask #${m.id}`), ` on ${item.image.file_name}`),
        h("div", { "data-testid": "review-scores" }, `predicted IoU ${fmt(m.predicted_iou)} · stability ${fmt(m.stability_score)} · ${m.area} px`),
        h("div", { class: "muted" }, `${item.pending} pending in this project`),
      );
    } else {
      this.itemInfo.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    }
    const idle = mode === "review" && !this.busy;
    const button = (action: string, label: string, key: string, onclick: () => void, enabled: boolean, primary = false) =>
      h("button", { "data-action": action, title: key, class: primary ? "primary" : "", disabled: !enabled, onclick }, label);
    this.actions.replaceChildren(
      button("accept", "Accept (A)", "A", () => void this.decide({ decision: "accept" }), idle, true),
      button("reject", "Reject (R)", "R", () => void this.decide({ decision: "reject" }), idle),
      button("fix", "Fix (F)", "F", () => this.enterFix(), idle),
      button("skip", "Skip (S)", "S", () => this.skip(), idle),
    );
    if (mode !== "fix") {
      this.fixPanel.replaceChildren();
      return;
    }
    const tool = (t: Tool, label: string, key: string) =>
      h("button", { "aria-pressed": String(this.tool === t), "data-tool": t, title: key, onclick: () => this.setTool(t) }, label);
    const undo = h("button", { title: "Ctrl+Z", disabled: !this.store.canUndo(), onclick: () => this.store.undo() }, "Undo");
    const redo = h("button", { title: "Ctrl+Shift+Z", disabled: !this.store.canRedo(), onclick: () => this.store.redo() }, "Redo");
    this.fixPanel.replaceChildren(
      h("div", { class: "muted" }, "Fixing: click to refine from the mask (right click: background), or paint."),
      h("div", { class: "row tools" }, tool("points", "Points", "V"), tool("brush", "Brush", "B"), tool("eraser", "Eraser", "E"), h("span", { class: "muted" }, `size ${this.brushRadius}px`)),
      h("div", { class: "row" }, undo, redo, button("cancel-fix", "Cancel (Esc)", "Esc", () => this.cancelFix(), !this.busy),
        button("submit-fix", "Submit fix (Enter)", "Enter", () => this.submitFix(), !this.busy, true)),
    );
  }

  // ---- keyboard ---------------------------------------------------------------------------------

  private onKey(e: KeyboardEvent): void {
    const tag = (e.target as HTMLElement | null)?.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || e.altKey || e.repeat) return;
    const ctrl = e.ctrlKey || e.metaKey;
    const key = e.key;
    const handled = (() => {
      if (this.mode === "fix") {
        if (ctrl && (key === "z" || key === "Z")) return e.shiftKey ? this.store.redo() : this.store.undo(), true;
        if (ctrl && key === "y") return this.store.redo(), true;
        if (ctrl) return false;
        switch (key) {
          case "Enter": this.submitFix(); return true;
          case "Escape": this.cancelFix(); return true;
          case "v": case "V": this.setTool("points"); return true;
          case "b": case "B": this.setTool("brush"); return true;
          case "e": case "E": this.setTool("eraser"); return true;
          case "[": this.brushRadius = Math.max(1, Math.round(this.brushRadius / 1.25)); this.drawUi(); this.render(); return true;
          case "]": this.brushRadius = Math.min(500, Math.round(this.brushRadius * 1.25) + 1); this.drawUi(); this.render(); return true;
          default: return false;
        }
      }
      if (ctrl) return false;
      switch (key) {
        case "a": case "A": void this.decide({ decision: "accept" }); return true;
        case "r": case "R": void this.decide({ decision: "reject" }); return true;
        case "f": case "F": this.enterFix(); return true;
        case "s": case "S": this.skip(); return true;
        default: return false;
      }
    })();
    if (handled) e.preventDefault();
  }
}

const PAST: Record<ReviewDecision["decision"], string> = { accept: "accepted", reject: "rejected", fix: "fixed" };

function fmt(value: number | null): string {
  return value === null ? "–" : value.toFixed(3);
}
