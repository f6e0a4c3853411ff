/**
 * Accepted masks on their way to the server. Nothing is lost: a mask enters the queue (and
 * localStorage, so a closed tab keeps it) before the first request, and leaves it only after a 2xx.
 * Failed requests are retried with exponential backoff; a 4xx other than 408/429 is a verdict, not
 * an outage, and is reported instead of retried forever. Saves are idempotent by `client_id`, so a
 * retry after a lost response never duplicates a mask.
 */
import { ApiError, saveMask } from "../api/client";
import type { MaskCreate, MaskOut } from "../api/types";

const STORAGE_KEY = "dataengine.pendingMasks";
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;

export interface PendingMask {
  imageId: number;
  body: MaskCreate;
}

export type SaveEvent =
  | { kind: "saving"; clientId: string }
  | { kind: "saved"; clientId: string; mask: MaskOut }
  | { kind: "retrying"; clientId: string; error: string; delayMs: number }
  | { kind: "rejected"; clientId: string; error: string };

function load(): PendingMask[] {
  try {
    const parsed = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "[]");
    return Array.isArray(parsed) ? parsed : [];
  } catch {
    return [];
  }
}

function isVerdict(error: unknown): boolean {
  return error instanceof ApiError && error.status >= 400 && error.status < 500 && ![401, 408, 429].includes(error.status);
}

export class MaskSaver {
  private queue: PendingMask[] = load();
  /** Client ids the server refused with a verdict: kept (never silently dropped) but not retried. */
  private rejected = new Set<string>();
  private running = false;
  private delayMs = FIRST_DELAY_MS;
  private listeners = new Set<(event: SaveEvent) => void>();
  private wake: (() => void) | null = null;

  constructor() {
    // Masks left by a previous tab or a crash go out as soon as the app starts.
    if (this.queue.length) queueMicrotask(() => void this.run());
  }

  subscribe(listener: (event: SaveEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Masks not yet confirmed by the server, optionally for one image. */
  pending(imageId?: number): PendingMask[] {
    return this.queue.filter((p) => imageId === undefined || p.imageId === imageId);
  }

  enqueue(imageId: number, body: MaskCreate): void {
    this.queue.push({ imageId, body });
    this.persist();
    this.retryNow();
    void this.run();
  }

  /** Drops a mask the server refused (it would never be accepted); returns it for the caller to show. */
  discard(clientId: string): void {
    this.queue = this.queue.filter((p) => p.body.client_id !== clientId);
    this.persist();
  }

  /** Resolves when nothing is pending for the image (or at all). */
  async flushed(imageId?: number): Promise<void> {
    void this.run();
    while (this.pending(imageId).some((p) => !this.rejected.has(p.body.client_id))) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Skips the current backoff wait (e.g. when the user acts again or the network comes back). */
  retryNow(): void {
    this.delayMs = FIRST_DELAY_MS;
    this.wake?.();
  }

  private persist(): void {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(this.queue));
  }

  private emit(event: SaveEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (;;) {
        const next = this.queue.find((p) => !this.rejected.has(p.body.client_id));
        if (!next) return;
        const clientId = next.body.client_id;
        this.emit({ kind: "saving", clientId });
        try {
          const mask = await saveMask(next.imageId, next.body);
          this.discard(clientId);
          this.delayMs = FIRST_DELAY_MS;
          this.emit({ kind: "saved", clientId, mask });
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          if (isVerdict(error)) {
            this.rejected.add(clientId);
            this.emit({ kind: "rejected", clientId, error: message });
            continue;
          }
          const delayMs = this.delayMs;
          this.delayMs = Math.min(this.delayMs * 2, MAX_DELAY_MS);
          this.emit({ kind: "retrying", clientId, error: message, delayMs });
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, delayMs);
            this.wake = () => (clearTimeout(timer), resolve());
          });
          this.wake = null;
        }
      }
    } finally {
      this.running = false;
    }
  }
}

/** One saver per tab: pending masks of every image share the queue and survive page changes. */
export const saver = new MaskSaver();
window.addEventListener("online", () => saver.retryNow());
