/**
 * The decoder of one model version, for as long as its owner lives: the Web Worker and its
 * onnxruntime sessions are loaded once (and warmed up with a throw-away run), and each image only
 * hands over its embedding. The annotate page keeps one for its whole session (the router keeps the
 * page when only the image changes) and `prepare`s the next and previous images while the annotator
 * works, so `forImage` on them runs no graph; the review page keeps one per visit.
 *
 * A failed load or embedding is forgotten, so the next call tries again (a click after a network
 * hiccup works), while `current` never starts one (a hover preview must not retry in a loop).
 */
import * as api from "../api/client";
import type { Embedding, ModelVersion } from "../api/types";
import { DecoderClient } from "../inference/decoder_client";

export interface DecoderInfo {
  /** "split": the per-image graph runs once per embedding and the per-click graph per click; "single": one graph. */
  mode: "split" | "single";
  /** Wasm threads onnxruntime-web runs with. */
  numThreads: number;
}

export class DecoderHost {
  private loaded: Promise<{ client: DecoderClient; info: DecoderInfo }> | null = null;
  private image: { id: number; ready: Promise<DecoderClient> } | null = null;
  private client: DecoderClient | null = null;
  /** Images prepared in (or on their way to) the worker; `client.has` says whether it still keeps one. */
  private readonly prepared = new Map<number, { done: boolean; ready: Promise<DecoderClient> }>();
  private version: Promise<ModelVersion> | null = null;

  /** @param model the project's active version, asked for once, when first needed. */
  constructor(private readonly model: () => Promise<ModelVersion>) {}

  private async versionId(): Promise<number> {
    return (await this.activeModel()).id;
  }

  private activeModel(): Promise<ModelVersion> {
    if (this.version === null) {
      const version = this.model();
      this.version = version;
      version.catch(() => this.version === version && (this.version = null));
    }
    return this.version;
  }

  /** Loads the graphs into a worker, once (again, in a fresh worker, only after a failure). */
  load(): Promise<DecoderInfo> {
    return this.loadClient().then(({ info }) => info);
  }

  /**
   * The decoder set to image `imageId`: its embedding (`embedding`, or fetched when not given) is
   * prepared in the worker once (unless `prepare` did it already); every decode after that refers to it.
   */
  forImage(imageId: number, embedding?: Promise<Embedding>): Promise<DecoderClient> {
    if (this.image?.id !== imageId) {
      const ready = this.prepare(imageId, embedding).then(async (client) => {
        await client.use(imageId);
        return client;
      });
      const image = { id: imageId, ready };
      this.image = image;
      ready.catch(() => this.image === image && (this.image = null));
    }
    return this.image!.ready;
  }

  /**
   * Runs image `imageId`'s per-image graph in the worker, in the background, unless it is kept there
   * already: the switch to it is then instant. Loads the graphs first if need be.
   */
  prepare(imageId: number, embedding?: Promise<Embedding>): Promise<DecoderClient> {
    const known = this.prepared.get(imageId);
    // Done and since evicted by the worker (it keeps the last few): prepare it again.
    if (known && (!known.done || this.client?.has(imageId))) return known.ready;
    const entry: { done: boolean; ready: Promise<DecoderClient> } = { done: false, ready: Promise.resolve(null!) };
    entry.ready = (async () => {
      const [{ client }, emb] = await Promise.all([this.loadClient(), embedding ?? this.versionId().then((v) => api.fetchEmbedding(imageId, v))]);
      await client.prepare(imageId, emb.data.slice(0), emb.dtype, emb.originalSize, emb.inputSize);
      entry.done = true;
      return client;
    })();
    this.prepared.set(imageId, entry);
    entry.ready.catch(() => this.prepared.get(imageId) === entry && this.prepared.delete(imageId));
    return entry.ready;
  }

  /** The decoder for `imageId` if it is set or being set to it, without starting anything. */
  current(imageId: number): Promise<DecoderClient> | null {
    return this.image?.id === imageId ? this.image.ready : null;
  }

  /** Stops the worker; pending decodes reject. */
  terminate(): void {
    this.client?.terminate();
  }

  private loadClient(): Promise<{ client: DecoderClient; info: DecoderInfo }> {
    if (this.loaded === null) {
      const client = new DecoderClient();
      this.client = client;
      const loaded = this.fetchAndLoad(client).then((info) => ({ client, info }));
      this.loaded = loaded;
      loaded.catch(() => {
        client.terminate();
        if (this.loaded === loaded) this.loaded = null;
      });
    }
    return this.loaded;
  }

  /**
   * The worker cannot send our bearer token: the graphs are fetched here and handed over as blob
   * URLs. The split pair (per-image graph, per-click graph) when the version has it, else the one graph.
   */
  private async fetchAndLoad(client: DecoderClient): Promise<DecoderInfo> {
    const model = await this.activeModel();
    const { click_graph_url: clickUrl, image_graph_url: imageUrl } = model;
    const split = clickUrl !== null && imageUrl !== null;
    const graphs = await Promise.all((split ? [clickUrl, imageUrl] : [model.decoder_url]).map(api.fetchBytes));
    const urls = graphs.map((bytes) => URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" })));
    try {
      const { numThreads } = await client.load(urls[0], { imageGraphUrl: urls[1] });
      return { mode: split ? "split" : "single", numThreads };
    } finally {
      urls.forEach((url) => URL.revokeObjectURL(url));
    }
  }
}
