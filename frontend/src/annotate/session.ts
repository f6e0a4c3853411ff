/**
 * The annotate session's movement between images, apart from the page that shows them (page.ts): it
 * claims the image opened (and keeps its lock fresh), moves on with *Done, next* (mark done, then
 * `claim next`), goes back to the previous image of the session, and prefetches the neighbours.
 *
 * While an image is worked on, the next one (what `claim next` would give, peeked without locking)
 * and the previous one are fetched (bitmap, embedding, masks) and their per-image graph is run in the
 * worker, so *Done, next* shows the next image ready to click at once; the claim confirms it meanwhile.
 * The images visited are kept in sessionStorage, so *Previous* survives a reload of the page.
 */
import * as api from "../api/client";
import type { Embedding, ImageInfo, MaskOut } from "../api/types";
import { navigate } from "../router";
import { ImageCache } from "./prefetch";
import { saver } from "./saver";

const LOCK_REFRESH_MS = 60_000;
const VISITED_KEY = "dataengine.visited";

/** The image shown by the page, as the session sees it: the same object while the same opening is shown. */
export interface ShownImage {
  image: ImageInfo;
}

/** What the session asks of the page that shows its images. */
export interface SessionView {
  /** The image shown now, or null (nothing yet, or a notice instead). */
  shown(): ShownImage | null;
  /** Shows an opened image; `claimed` resolves once it is claimed (saves wait for it). */
  show(image: ImageInfo, bitmap: ImageBitmap, masks: MaskOut[], embedding: Embedding, fetched: Promise<Embedding>, claimed: Promise<unknown>): void;
  /** Replaces the page with an error notice. */
  fail(message: string): void;
  /** Replaces the page with the "nothing left to annotate" notice. */
  nothingLeft(): void;
  /** Whether leaving the image may go on: no working mask is left unaccepted, or the annotator discards it. */
  mayDiscardWorking(): boolean;
  /** A line about moving between images (where the save status is shown). */
  status(text: string): void;
  /** The image's lock was taken by someone else. */
  lockLost(message: string): void;
  /** Runs image `imageId`'s per-image graph in the decoder ahead of its opening. */
  prepare(imageId: number, embedding: Promise<Embedding>): void;
}

function visitedImages(): number[] {
  return JSON.parse(sessionStorage.getItem(VISITED_KEY) ?? "[]");
}

function rememberVisit(imageId: number): void {
  const visited = visitedImages();
  if (visited[visited.length - 1] !== imageId) visited.push(imageId);
  sessionStorage.setItem(VISITED_KEY, JSON.stringify(visited.slice(-200)));
}

export class AnnotateSession {
  private readonly cache = new ImageCache();
  private readonly lock: number;
  /** Counts `go` calls: an image that finishes loading after the annotator moved on is not shown. */
  private opening = 0;
  /** The image *Done, next* moves to, and the `claim next` that locks it (or another: then that one is shown). */
  private claimed: { image: ImageInfo; claim: Promise<ImageInfo | null> } | null = null;
  /** What `claim next` would give after the image shown, as peeked while prefetching. */
  private peeked: ImageInfo | null = null;
  private isClosed = false;

  constructor(
    private readonly projectId: number,
    private readonly view: SessionView,
  ) {
    this.lock = window.setInterval(() => {
      const image = this.view.shown()?.image;
      if (!image) return;
      void api.claimImage(image.id).catch((error) => {
        if (error instanceof api.ApiError && error.status === 409) this.view.lockLost(error.message);
      });
    }, LOCK_REFRESH_MS);
  }

  /** Whether the page was left: what finishes loading afterwards is dropped. */
  get closed(): boolean {
    return this.isClosed;
  }

  close(): void {
    this.isClosed = true;
    clearInterval(this.lock);
  }

  /** Frees what was prefetched (after the decoder is gone). */
  clearCache(): void {
    this.cache.clear();
  }

  /**
   * Shows image `imageId`: claims it (unless *Done, next* is claiming it), and opens it from what was
   * prefetched (fetching what was not); then prefetches its neighbours.
   */
  async go(imageId: number): Promise<void> {
    const opening = ++this.opening;
    const current = this.view.shown();
    if (current && current.image.id !== imageId) this.cache.left(current.image.id);
    const claimed = this.claimed?.image.id === imageId ? this.claimed : null;
    this.claimed = null;
    this.peeked = null;
    let image: ImageInfo;
    let bitmap: ImageBitmap;
    let masks: MaskOut[];
    const prefetched = this.cache.get(imageId);
    try {
      image = claimed ? claimed.image : await api.claimImage(imageId);
    } catch (error) {
      if (opening === this.opening) this.view.fail(String((error as Error).message));
      return;
    }
    try {
      [bitmap, masks] = await Promise.all([prefetched.bitmap, prefetched.masks]);
      const embedding = await prefetched.embedding;
      if (opening !== this.opening || this.closed) return;
      this.view.show(image, bitmap, masks, embedding, prefetched.embedding, claimed ? this.confirm(imageId, claimed.claim, opening) : Promise.resolve());
    } catch (error) {
      if (opening === this.opening) this.view.fail(`Could not open ${image.file_name}: ${(error as Error).message}`);
      return;
    }
    rememberVisit(imageId);
    void this.prefetchAround(imageId);
  }

  /**
   * The claim of a prefetched image shown by *Done, next*: usually it is this image; if someone took
   * it meanwhile, the image claimed instead is shown (nothing was saved on this one: saves wait).
   */
  private async confirm(imageId: number, claim: Promise<ImageInfo | null>, opening: number): Promise<void> {
    let next: ImageInfo | null;
    try {
      next = await claim;
    } catch (error) {
      if (opening === this.opening) this.view.fail(`Could not claim the next image: ${(error as Error).message}`);
      return;
    }
    if (opening !== this.opening || this.closed) return;
    const shown = this.view.shown();
    if (next === null) this.view.nothingLeft();
    else if (next.id !== imageId) {
      this.claimed = { image: next, claim: Promise.resolve(next) };
      navigate(`/annotate/${this.projectId}/${next.id}`, true);
    } else if (shown?.image.id === imageId) shown.image = next;
  }

  /** Fetches (and prepares in the decoder) the image `claim next` would give after this one, and the previous one. */
  private async prefetchAround(imageId: number): Promise<void> {
    const previous = this.previousOf(imageId);
    const next = await api.peekNext(this.projectId, imageId).catch(() => null);
    if (this.closed || this.view.shown()?.image.id !== imageId) return;
    this.peeked = next;
    for (const id of [next?.id, previous]) {
      if (id === undefined || id === imageId) continue;
      this.view.prepare(id, this.cache.get(id).embedding);
    }
  }

  private previousOf(imageId: number): number | undefined {
    const visited = visitedImages();
    const here = visited.lastIndexOf(imageId);
    return here > 0 ? visited[here - 1] : undefined;
  }

  /**
   * Done, next: once the image's saves are in, it is marked done and `claim next` locks the next one.
   * The image peeked and prefetched is shown at once, while the claim confirms it (see `confirm`).
   */
  async next(): Promise<void> {
    const shown = this.view.shown();
    if (!shown) return;
    if (!this.view.mayDiscardWorking()) return;
    this.view.status("waiting for saves…");
    try {
      await saver.flushed(shown.image.id);
      await api.markDone(shown.image.id);
      const claim = api.claimNext(this.projectId);
      const peeked = this.peeked;
      if (peeked !== null && this.view.shown() === shown) {
        this.claimed = { image: peeked, claim };
        return navigate(`/annotate/${this.projectId}/${peeked.id}`);
      }
      const next = await claim;
      if (this.view.shown() !== shown || this.closed) return;
      if (next === null) return this.view.nothingLeft();
      this.claimed = { image: next, claim: Promise.resolve(next) };
      navigate(`/annotate/${this.projectId}/${next.id}`);
    } catch (error) {
      this.view.status(`could not move on: ${(error as Error).message}`);
    }
  }

  /** Previous: back to the image visited before this one (its lock is retaken; this one's is released). */
  previous(): void {
    const shown = this.view.shown();
    if (!shown) return;
    const visited = visitedImages();
    const here = visited.lastIndexOf(shown.image.id);
    const previous = here > 0 ? visited[here - 1] : undefined;
    if (previous === undefined) {
      this.view.status("no previous image in this session");
      return;
    }
    sessionStorage.setItem(VISITED_KEY, JSON.stringify(visited.slice(0, here)));
    void api.releaseImage(shown.image.id).catch(() => undefined);
    navigate(`/annotate/${this.projectId}/${previous}`);
  }
}
