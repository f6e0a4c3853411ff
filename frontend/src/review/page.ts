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
 * "start over". Fixing happens in the mask editor the annotate page uses too (editor/), which lives as
 * long as the page: each mask opens in it, and the decoder loads at the first fix.
 *
 * While a mask is reviewed, the next one's image (bitmap) and embedding are fetched, and once the
 * decoder is loaded its per-image graph is run too, so the next mask shows (and fixes) at once. As on
 * the annotate page, each image decodes with the decoder of the version its embedding came from
 * (editor/decoder.ts): during a re-embedding, the previous version's for images not reached yet.
 */
import * as api from "../api/client";
import { ApiError } from "../api/client";
import { h } from "../dom";
import { DecoderHost } from "../editor/decoder";
import { MaskEditor } from "../editor/editor";
import { inputSizeOf } from "../editor/mask_input";
import { maskColour, type Size } from "../editor/masks";
import { decodeRle, encodeRle } from "../editor/rle";
import { frame } from "../layout";
import type { Embedding } from "../api/types";
import type { Cleanup } from "../router";
import { nextForReview, reviewMask, reviewSummary, type ReviewDecision, type ReviewItem } from "./api";

type Mode = "loading" | "review" | "fix" | "done";

const AUTO_COLOUR_INDEX = 7;
/** Images whose bitmap and embedding the page keeps: the one shown, the next, one on its way out. */
const KEPT_IMAGES = 3;

interface ImageData {
  bitmap: Promise<ImageBitmap>;
  embedding: Promise<Embedding>;
}

export async function reviewPage(root: HTMLElement, params: Record<string, string>): Promise<Cleanup> {
  const projectId = Number(params.projectId);
  const { main } = await frame(root, "review", { projectId, title: "Review", fill: true });
  const controller = new ReviewController(root, main, projectId);
  void controller.next();
  return controller.cleanup;
}

class ReviewController {
  private mode: Mode = "loading";
  private busy = false;
  private item: ReviewItem | null = null;
  /** The auto mask, uint8 [h, w] row-major, original image frame. */
  private base: Uint8Array | null = null;
  /** Bitmaps and embeddings by image id, least recently used first (a failed fetch is forgotten). */
  private readonly images = new Map<number, ImageData>();
  /** Whether a fix loaded the decoder: from then on the next mask's image is prepared in it too. */
  private decoderWanted = false;
  private shownAt = 0;
  /** Masks this page decided: never posted again. */
  private readonly decided = new Set<number>();
  /** Skipped masks are those with ids up to this one. */
  private skipAfter = 0;
  private readonly decoders: DecoderHost;
  private readonly editor: MaskEditor;
  private readonly disposers: (() => void)[] = [];

  private readonly stage = h("div", { class: "stage", "data-testid": "stage" });
  private readonly summary = h("div", { "data-testid": "review-summary" }, "summary: loading…");
  private readonly itemInfo = h("div", { "data-testid": "review-item" });
  private readonly error = h("div", { class: "error", "data-testid": "review-error", role: "alert" });
  private readonly status = h("div", { class: "muted", "data-testid": "review-status", "aria-live": "polite" });
  private readonly actions = h("div", { class: "row" });
  private readonly fixPanel = h("div", { "data-testid": "fix-panel" });

  constructor(
    /** The page's root: it carries the mode as `data-review-mode`. */
    private readonly root: HTMLElement,
    main: HTMLElement,
    private readonly projectId: number,
  ) {
    this.decoders = new DecoderHost();
    this.editor = new MaskEditor(this.stage, this.decoders, { boxes: false, editing: false, paused: () => this.busy });
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
          this.editor.status,
          this.status,
          this.error,
          h("div", { class: "muted" }, "A accept · R reject · F fix · S skip. Fixing: V points, B brush, E eraser, [ ] size, Ctrl+Z undo, Enter submit, Esc cancel."),
        ),
      ),
    );
    const onKey = (e: KeyboardEvent) => this.onKey(e);
    window.addEventListener("keydown", onKey);
    this.disposers.push(() => window.removeEventListener("keydown", onKey));
    this.disposers.push(this.editor.subscribe(() => (this.drawAutoMask(), this.render())));
    void this.refreshSummary();
    this.render();
  }

  readonly cleanup = (): void => {
    for (const dispose of this.disposers) dispose();
    this.editor.dispose();
    this.decoders.terminate();
    for (const data of this.images.values()) void data.bitmap.then((b) => b.close(), () => undefined);
  };

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
      const data = this.imageData(item.image.id);
      this.show(item, await data.bitmap, data.embedding);
      void this.prefetchAfter(item);
    } catch (error) {
      this.showError(`could not load the next mask: ${(error as Error).message}`);
      this.mode = this.item ? "review" : "done";
    } finally {
      this.busy = false;
      this.render();
    }
  }

  /** The bitmap and embedding of image `imageId`, fetched once while it is kept. */
  private imageData(imageId: number): ImageData {
    let data = this.images.get(imageId);
    if (data === undefined) {
      const fetched: ImageData = {
        bitmap: api.fetchImageBitmap(imageId),
        embedding: api.fetchEmbedding(imageId),
      };
      const forget = () => this.images.get(imageId) === fetched && this.images.delete(imageId);
      fetched.bitmap.catch(forget);
      fetched.embedding.catch(forget);
      data = fetched;
    }
    this.images.delete(imageId);
    this.images.set(imageId, data);
    while (this.images.size > KEPT_IMAGES) {
      const [oldest, old] = this.images.entries().next().value!;
      this.images.delete(oldest);
      void old.bitmap.then((b) => b.close(), () => undefined);
    }
    return data;
  }

  /** Fetches what the mask after `item` needs (the one shown next unless it is skipped past). */
  private async prefetchAfter(item: ReviewItem): Promise<void> {
    const upcoming = await nextForReview(this.projectId, item.mask.id).catch(() => null);
    if (upcoming === null || this.item !== item) return;
    const data = this.imageData(upcoming.image.id);
    if (this.decoderWanted) void this.decoders.prepare(upcoming.image.id, data.embedding).catch(() => undefined);
  }

  private show(item: ReviewItem, bitmap: ImageBitmap, embedding: Promise<Embedding>): void {
    this.editor.stopEditing(); // a fix of the previous mask ends (it is drawn over the previous image)
    this.item = item;
    const originalSize: Size = [item.mask.rle.size[0], item.mask.rle.size[1]];
    this.base = decodeRle(item.mask.rle);
    this.mode = "review";
    this.shownAt = performance.now();
    this.editor.open({ id: item.image.id, bitmap, originalSize, inputSize: inputSizeOf(originalSize), embedding });
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

  /** Fixing starts from the auto mask: clicks refine it (it is SAM's mask input), brush and eraser change it. */
  private enterFix(): void {
    if (this.busy || this.mode !== "review" || !this.item || !this.base) return;
    this.mode = "fix";
    this.editor.startEditing({ maskId: this.item.mask.id, pixels: this.base }); // redraws
    this.decoderWanted = true;
    this.editor.loadDecoder();
  }

  private cancelFix(): void {
    if (this.mode !== "fix" || this.busy) return;
    this.mode = "review";
    this.editor.stopEditing(); // redraws
  }

  private submitFix(): void {
    if (this.mode !== "fix" || this.busy || !this.item) return;
    const item = this.item;
    void this.editor.settled().then(() => {
      if (this.item !== item || this.mode !== "fix") return;
      const [height, width] = [item.mask.rle.size[0], item.mask.rle.size[1]];
      const mask = this.editor.fullMask();
      if (!mask.some((v) => v)) {
        this.showError("the fixed mask is empty: reject the mask instead (R after Esc)");
        return;
      }
      void this.decide({ decision: "fix", rle: encodeRle(mask, height, width) });
    });
  }

  // ---- rendering --------------------------------------------------------------------------------

  /** Review: the auto mask filled. Fix: the auto mask dashed underneath the mask being fixed (the editor's). */
  private drawAutoMask(): void {
    const base = this.base;
    if (!base || !this.item) return;
    const layer = { key: `auto:${this.item.mask.id}`, mask: () => base, colourIndex: AUTO_COLOUR_INDEX, prefilled: this.mode === "fix" };
    this.editor.drawSaved([layer]);
  }

  private render(): void {
    const item = this.item;
    const mode = this.mode;
    this.root.dataset.reviewMode = mode;
    if (mode === "done") {
      this.editor.close();
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
    const editor = this.editor;
    this.fixPanel.replaceChildren(
      h("div", { class: "muted" }, "Fixing: click to refine from the mask (right click: background), or paint."),
      editor.toolbar,
      h("div", { class: "row" }, editor.undoButton, editor.redoButton, button("cancel-fix", "Cancel (Esc)", "Esc", () => this.cancelFix(), !this.busy),
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
        if (this.editor.handleKey(e)) return true;
        if (ctrl) return false;
        switch (key) {
          case "Enter": this.submitFix(); return true;
          case "Escape": this.cancelFix(); return true;
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
