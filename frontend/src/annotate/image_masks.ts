/**
 * The masks of the image being annotated, as the page shows them: those on the server (manual and
 * pre-filled), those accepted here that the server has not confirmed yet (drawn at once, from their
 * pixels), the corrections that hide the mask they replace meanwhile, and which of them are hidden.
 */
import type { MaskCreate, MaskOut } from "../api/types";
import { maskColour, type Rgb } from "../editor/masks";
import { decodeRle } from "../editor/rle";
import { rleMask, type SavedLayer } from "../editor/view";
import type { SaveEvent } from "./saver";

export class ImageMasks {
  /** Masks on the server, by id. */
  readonly saved = new Map<number, MaskOut>();
  /** Accepted masks by client id, uint8 [h, w]: kept after the server confirms them (no decode needed to draw them). */
  readonly unsaved = new Map<string, Uint8Array>();
  /** What the saver last said of each unconfirmed mask, by client id. */
  readonly saveState = new Map<string, string>();
  /** Accepted corrections the server has not confirmed yet: client id -> the saved mask each replaces (hidden meanwhile). */
  readonly replacing = new Map<string, number>();
  /** Layer keys the annotator unticked. */
  readonly hidden = new Set<string>();
  /** H: every mask hidden at once. */
  allHidden = false;

  constructor(masks: MaskOut[]) {
    for (const mask of masks) this.saved.set(mask.id, mask);
  }

  /** Saved masks still on the image: not replaced by an accepted correction (saved or on its way). */
  current(): MaskOut[] {
    const replaced = new Set(this.replacing.values());
    return [...this.saved.values()].filter((mask) => !replaced.has(mask.id));
  }

  /** Client ids of accepted masks the server has not answered with a saved row yet. */
  unconfirmed(): string[] {
    const confirmed = new Set([...this.saved.values()].map((m) => m.client_id));
    return [...this.unsaved.keys()].filter((clientId) => !confirmed.has(clientId));
  }

  /** The layers to draw (`all`: every live mask, hidden ones too: what covers the image); `correcting` (the id of the mask being corrected) stays underneath, dashed, to compare with. */
  layers(correcting: number | null, all = false): SavedLayer[] {
    const layers: SavedLayer[] = [];
    if (this.allHidden && !all) return layers;
    for (const mask of this.current()) {
      const key = savedKey(mask);
      if (!all && this.hidden.has(key)) continue;
      const unsaved = mask.client_id ? this.unsaved.get(mask.client_id) : undefined;
      const dashed = mask.source !== "manual" || correcting === mask.id;
      layers.push({ key, mask: unsaved ? () => unsaved : rleMask(mask.rle), colourIndex: colourIndex(key), prefilled: dashed });
    }
    for (const clientId of this.unconfirmed()) {
      if (!all && this.hidden.has(clientId)) continue;
      const mask = this.unsaved.get(clientId)!;
      layers.push({ key: clientId, mask: () => mask, colourIndex: colourIndex(clientId), prefilled: false });
    }
    return layers;
  }

  /** The saved mask drawn at pixel (x, y) (the newest where masks overlap), for C. */
  at(x: number, y: number, width: number): MaskOut | null {
    if (this.allHidden) return null;
    const hit = (mask: MaskOut) => {
      const [bx, by, bw, bh] = mask.bbox;
      return x >= bx && x < bx + bw && y >= by && y < by + bh && decodeRle(mask.rle)[y * width + x] === 1;
    };
    const shown = this.current().filter((mask) => !this.hidden.has(savedKey(mask)));
    return shown.reverse().find(hit) ?? null;
  }

  /** A mask accepted here, drawn at once; `replaces` the saved mask it corrects. */
  accepted(clientId: string, mask: Uint8Array, replaces?: number): void {
    this.unsaved.set(clientId, mask);
    if (replaces !== undefined) this.replacing.set(clientId, replaces);
  }

  /** A mask accepted earlier (this tab or a previous one) that the server has not confirmed yet. */
  restore(body: MaskCreate): void {
    this.unsaved.set(body.client_id, rleMask(body.rle)());
    this.saveState.set(body.client_id, "not saved yet");
    if (body.replaces_mask_id != null) this.replacing.set(body.client_id, body.replaces_mask_id);
  }

  /** Applies a saver event for one of this image's masks; false when the mask is not one of them. */
  apply(event: SaveEvent): boolean {
    if (!this.unsaved.has(event.clientId)) return false;
    switch (event.kind) {
      case "saving":
        this.saveState.set(event.clientId, "saving…");
        break;
      case "saved": {
        this.saved.set(event.mask.id, event.mask);
        this.saveState.delete(event.clientId);
        // The server hid the mask this one corrects.
        const replaced = this.replacing.get(event.clientId);
        if (replaced !== undefined) this.saved.delete(replaced);
        this.replacing.delete(event.clientId);
        break;
      }
      case "retrying":
        this.saveState.set(event.clientId, "not saved yet, retrying");
        break;
      case "rejected":
        this.saveState.set(event.clientId, `refused: ${event.error}`);
        this.replacing.delete(event.clientId); // the mask it would have replaced is still there
        break;
    }
    return true;
  }

  /** Forgets a mask the server deleted. */
  deleted(mask: MaskOut): void {
    this.saved.delete(mask.id);
    if (mask.client_id) this.unsaved.delete(mask.client_id);
  }
}

/** The key of a saved mask's layer, list entry and visibility: its client id when the browser made it. */
export function savedKey(mask: MaskOut): string {
  return mask.client_id ?? `id:${mask.id}`;
}

/** A stable colour per mask, the same before and after the server confirmed it. */
export function colourOf(key: string): Rgb {
  return maskColour(colourIndex(key));
}

function colourIndex(key: string): number {
  let hash = 0;
  for (let i = 0; i < key.length; i++) hash = (hash * 31 + key.charCodeAt(i)) | 0;
  return Math.abs(hash);
}
