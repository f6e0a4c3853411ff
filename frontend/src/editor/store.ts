/**
 * The editor's one store: the mask being drawn (its prompt, brush strokes and the decoder's answer)
 * with undo/redo, and the existing mask it corrects if any (a saved mask on the annotate page, the
 * auto mask being fixed on the review page). Every state of the working mask is an immutable snapshot
 * that keeps its own decoder output, so undo and redo are instant: no decode runs again. What a page
 * keeps beside the working mask (the image's saved masks, the review queue) is that page's own.
 */
import type { Point } from "../api/types";
import { tokenLogits } from "../inference/decoder_client";

/** A brush or eraser stroke in the ORIGINAL image frame; `radius` in original pixels. */
export interface Stroke {
  mode: "brush" | "eraser";
  radius: number;
  points: [number, number][];
}

/** Decoder output: float32 [4, 256, 256] logits (token 0 single-mask, 1-3 multimask) and 4 IoUs. */
export interface Decoded {
  lowRes: Float32Array;
  iou: Float32Array;
}

export interface WorkingMask {
  points: readonly Point[];
  /** [x0, y0, x1, y1] in original pixels. */
  box: readonly [number, number, number, number] | null;
  strokes: readonly Stroke[];
  decoded: Decoded | null;
  /** The decoder token shown and saved: 0 (single-mask) or 1..3 (the three candidates). */
  candidate: number;
}

export const EMPTY: WorkingMask = { points: [], box: null, strokes: [], decoded: null, candidate: 0 };

/** One point and no box is ambiguous (whole, part or subpart?): SAM answers with three candidates. */
export function isAmbiguous(state: Pick<WorkingMask, "points" | "box">): boolean {
  return state.points.length === 1 && state.box === null;
}

/** The candidate shown first: the best predicted IoU among the three for an ambiguous prompt, else token 0. */
export function defaultCandidate(state: Pick<WorkingMask, "points" | "box">, decoded: Decoded): number {
  if (!isAmbiguous(state)) return 0;
  let best = 1;
  for (let t = 2; t <= 3; t++) if (decoded.iou[t] > decoded.iou[best]) best = t;
  return best;
}

/** float32 [256*256] logits of the shown candidate: the mask input of the next click. */
export function candidateLogits(state: WorkingMask): Float32Array | undefined {
  return state.decoded ? tokenLogits(state.decoded.lowRes, state.candidate) : undefined;
}

export function isEmpty(state: WorkingMask): boolean {
  return state.points.length === 0 && state.box === null && state.strokes.length === 0;
}

const HISTORY_LIMIT = 100;

export class EditorStore {
  private history: WorkingMask[] = [EMPTY];
  private index = 0;
  /**
   * The existing mask the working mask corrects, and its pixels (uint8 [h, w], original frame): the
   * working mask starts as that mask, and the page's accept replaces it. Null for a new mask.
   */
  correcting: { maskId: number; pixels: Uint8Array } | null = null;
  /**
   * Counts fresh starts (clear, correct): a decode asked for before one is answered into a working
   * mask that no longer exists, so the editor drops it.
   */
  epoch = 0;
  /** Clicks, boxes and strokes made on the working mask (undone ones count: they were work). */
  actions = 0;
  startedAt: number | null = null;
  private listeners = new Set<() => void>();

  get working(): WorkingMask {
    return this.history[this.index];
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed(): void {
    for (const listener of this.listeners) listener();
  }

  /** Records a new state of the working mask (a click, box, stroke or candidate change). */
  push(state: WorkingMask, countsAsAction = true): void {
    this.history = this.history.slice(0, this.index + 1);
    this.history.push(state);
    if (this.history.length > HISTORY_LIMIT) this.history.shift();
    this.index = this.history.length - 1;
    if (countsAsAction) {
      this.actions++;
      this.startedAt ??= performance.now();
    }
    this.changed();
  }

  /** Replaces the current state without a history entry (switching candidates is not an edit). */
  replace(state: WorkingMask): void {
    this.history[this.index] = state;
    this.changed();
  }

  canUndo(): boolean {
    return this.index > 0;
  }

  canRedo(): boolean {
    return this.index < this.history.length - 1;
  }

  undo(): void {
    if (!this.canUndo()) return;
    this.index--;
    this.changed();
  }

  redo(): void {
    if (!this.canRedo()) return;
    this.index++;
    this.changed();
  }

  /** Starts a fresh working mask (after accept or Esc); a correction in progress ends too. */
  clear(): void {
    this.restart(null);
  }

  /** Starts a working mask that corrects saved mask `maskId`, beginning as its `pixels`. */
  correct(maskId: number, pixels: Uint8Array): void {
    this.restart({ maskId, pixels });
  }

  private restart(correcting: EditorStore["correcting"]): void {
    this.epoch++;
    this.history = [EMPTY];
    this.index = 0;
    this.actions = 0;
    this.startedAt = null;
    this.correcting = correcting;
    this.changed();
  }

  secondsSpent(): number {
    return this.startedAt === null ? 0 : (performance.now() - this.startedAt) / 1000;
  }
}
