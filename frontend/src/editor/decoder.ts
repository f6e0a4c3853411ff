/**
 * The decoder of one model version, for as long as its owner lives: the Web Worker and its
 * onnxruntime sessions are loaded once, and each image only hands over its embedding. The annotate
 * page owns one per opened image today and the review page one per visit; an owner that outlives
 * images (an annotate session that switches images without a reload) keeps the same host and calls
 * `forImage` with the next image.
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

  /** @param model the project's active version, asked for when the graphs are first loaded. */
  constructor(private readonly model: () => Promise<ModelVersion>) {}

  /** Loads the graphs into a worker, once (again, in a fresh worker, only after a failure). */
  load(): Promise<DecoderInfo> {
    return this.loadClient().then(({ info }) => info);
  }

  /**
   * The decoder set to image `imageId`: its embedding (`embedding`, or fetched when not given) is
   * handed to the worker once; every decode after that refers to it.
   */
  forImage(imageId: number, embedding?: Embedding): Promise<DecoderClient> {
    if (this.image?.id !== imageId) {
      const ready = (async () => {
        const [{ client }, emb] = await Promise.all([this.loadClient(), embedding ?? api.fetchEmbedding(imageId)]);
        await client.setEmbedding(emb.data, emb.originalSize, emb.inputSize);
        return client;
      })();
      const image = { id: imageId, ready };
      this.image = image;
      ready.catch(() => this.image === image && (this.image = null));
    }
    return this.image!.ready;
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
    const model = await this.model();
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
