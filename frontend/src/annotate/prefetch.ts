/**
 * What the annotate session has fetched ahead, per image: the decoded bitmap, the embedding and the
 * saved masks, so that *Done, next* (and Previous) show the image at once. The image shown and its
 * neighbours (the one `claim next` would give, the previous one) are kept; others are dropped (their
 * bitmaps closed). A fetch that fails is forgotten, so asking again retries.
 *
 * Masks change while an image is worked on: they are fetched again after the session leaves an image
 * (`left`), by then with every save of it flushed. The bitmap never changes; the embedding is the one
 * the server chose when it was fetched (tagged with its version: the serving one's, or during a
 * re-embedding the previous one's) and is kept with its entry, so an image decodes with one version
 * for as long as it is kept; fetched again after eviction, it may be the new version's by then.
 */
import * as api from "../api/client";
import type { Embedding, MaskOut } from "../api/types";

/** Entries kept: the image shown, the next, the previous, and one on its way out. */
const KEPT = 4;

export interface Prefetched {
  bitmap: Promise<ImageBitmap>;
  embedding: Promise<Embedding>;
  masks: Promise<MaskOut[]>;
}

interface Entry {
  bitmap: Promise<ImageBitmap>;
  embedding: Promise<Embedding>;
  masks: Promise<MaskOut[]> | null;
}

export class ImageCache {
  private readonly entries = new Map<number, Entry>();

  /** Starts (or reuses) the fetches of image `imageId`; the promises reject as their fetch does. */
  get(imageId: number): Prefetched {
    let entry = this.entries.get(imageId);
    if (entry === undefined) {
      entry = {
        bitmap: this.fetching(imageId, "bitmap", api.fetchImageBitmap(imageId)),
        embedding: this.fetching(imageId, "embedding", api.fetchEmbedding(imageId)),
        masks: null,
      };
    }
    if (entry.masks === null) entry.masks = this.fetching(imageId, "masks", api.listMasks(imageId));
    this.entries.delete(imageId); // most recently used last
    this.entries.set(imageId, entry);
    this.evict();
    return entry as Prefetched;
  }

  /** The session left image `imageId`: its masks are fetched anew the next time. */
  left(imageId: number): void {
    const entry = this.entries.get(imageId);
    if (entry) entry.masks = null;
  }

  /** Closes every bitmap (the session ends). */
  clear(): void {
    for (const entry of this.entries.values()) void entry.bitmap.then((b) => b.close(), () => undefined);
    this.entries.clear();
  }

  private fetching<T>(imageId: number, part: keyof Entry, promise: Promise<T>): Promise<T> {
    promise.catch(() => {
      const entry = this.entries.get(imageId);
      if (entry?.[part] !== promise) return;
      if (part === "masks") entry.masks = null;
      else this.entries.delete(imageId);
    });
    return promise;
  }

  private evict(): void {
    while (this.entries.size > KEPT) {
      const [imageId, entry] = this.entries.entries().next().value!;
      this.entries.delete(imageId);
      void entry.bitmap.then((b) => b.close(), () => undefined);
    }
  }
}
