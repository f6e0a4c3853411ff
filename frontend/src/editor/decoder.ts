/**
 * The decoders of the model versions a page's embeddings come from, for as long as the page lives.
 * An embedding is only ever decoded by the decoder of the version whose image encoder made it (its
 * `modelVersionId`, the server's `X-Model-Version`): while a project is re-embedded after a new
 * encoder, some images are served the new version's embedding and others still the previous
 * version's, and a decoder of one version on the other's embedding gives masks of no meaning.
 *
 * Per version: one Web Worker with its onnxruntime sessions, loaded once (the graphs' URLs from
 * `GET /api/model-versions/{id}`, or from `know` for the model the page has already), and at most
 * `KEPT_VERSIONS` at a time. Each image only hands its embedding to its version's worker. The annotate
 * page keeps one host for its whole session (the router keeps the page when only the image changes)
 * and `prepare`s the next and previous images while the annotator works, so `forImage` on them runs
 * no graph; the review page keeps one per visit.
 *
 * A failed load or embedding is forgotten, so the next call tries again (a click after a network
 * hiccup works), while `current` never starts one (a hover preview must not retry in a loop).
 */
import * as api from "../api/client";
import type { Embedding, ModelVersion } from "../api/types";
import { DecoderClient } from "../inference/decoder_client";

/** Versions whose worker stays loaded: during a re-embedding the previous and the new one. */
const KEPT_VERSIONS = 2;

export interface DecoderInfo {
  /** "split": the per-image graph runs once per embedding and the per-click graph per click; "single": one graph. */
  mode: "split" | "single";
  /** Wasm threads onnxruntime-web runs with. */
  numThreads: number;
}

/** One version's loaded decoder; `client` decodes only embeddings of `model`'s encoder. */
export interface VersionDecoder {
  model: ModelVersion;
  client: DecoderClient;
  info: DecoderInfo;
}

interface Prepared {
  /** The embedding it was prepared from (a page that fetches the image's embedding anew prepares again). */
  source: Promise<Embedding>;
  decoder: VersionDecoder | null;
  ready: Promise<VersionDecoder>;
}

export class DecoderHost {
  private readonly described = new Map<number, Promise<ModelVersion>>();
  /** Loaded (or loading) workers by version id, least recently used first. */
  private readonly loaded = new Map<number, { client: DecoderClient; ready: Promise<VersionDecoder> }>();
  private image: { id: number; source: Promise<Embedding> | undefined; ready: Promise<VersionDecoder>; versionId: number | null } | null = null;
  /** Images prepared in (or on their way to) their version's worker. */
  private readonly prepared = new Map<number, Prepared>();

  /** @param describe a version's identity and graph URLs by id (default: `GET /api/model-versions/{id}`). */
  constructor(private readonly describe: (versionId: number) => Promise<ModelVersion> = api.getModelVersion) {}

  /** Takes `model` as what version `model.id` is (the project's model as the page loaded it): no request for it. */
  know(model: ModelVersion): void {
    this.described.set(model.id, Promise.resolve(model));
  }

  /** Loads version `versionId`'s graphs into a worker, once (again, in a fresh worker, only after a failure). */
  load(versionId: number): Promise<VersionDecoder> {
    let entry = this.loaded.get(versionId);
    if (entry === undefined) {
      const client = new DecoderClient();
      const ready = this.fetchAndLoad(versionId, client).then(({ model, info }) => ({ model, client, info }));
      const made = { client, ready };
      ready.catch(() => {
        client.terminate();
        if (this.loaded.get(versionId) === made) this.loaded.delete(versionId);
      });
      entry = made;
    }
    this.loaded.delete(versionId); // most recently used last
    this.loaded.set(versionId, entry);
    this.evict(versionId);
    return entry.ready;
  }

  /**
   * The decoder set to image `imageId`: its embedding (`embedding`, or fetched when not given) is
   * prepared in the worker of the embedding's version once (unless `prepare` did it already); every
   * decode through the returned client refers to it.
   */
  forImage(imageId: number, embedding?: Promise<Embedding>): Promise<VersionDecoder> {
    const shown = this.image;
    if (shown === null || shown.id !== imageId || (embedding !== undefined && shown.source !== embedding)) {
      const image = { id: imageId, source: embedding, versionId: null as number | null, ready: Promise.resolve(null!) as Promise<VersionDecoder> };
      image.ready = this.prepare(imageId, embedding).then(async (decoder) => {
        image.versionId = decoder.model.id;
        await decoder.client.use(imageId);
        return decoder;
      });
      this.image = image;
      image.ready.catch(() => this.image === image && (this.image = null));
    }
    return this.image!.ready;
  }

  /**
   * Runs image `imageId`'s per-image graph in its version's worker, in the background, unless it is
   * kept there already: the switch to it is then instant. Loads that version's graphs first if need be.
   */
  prepare(imageId: number, embedding?: Promise<Embedding>): Promise<VersionDecoder> {
    const known = this.prepared.get(imageId);
    const sameSource = known !== undefined && (embedding === undefined || known.source === embedding);
    // Done and since evicted (the worker keeps the last few images; a version's worker may be gone): prepare it again.
    if (known && sameSource && (known.decoder === null || this.keeps(known.decoder, imageId))) return known.ready;
    const source = embedding ?? known?.source ?? api.fetchEmbedding(imageId);
    const entry: Prepared = { source, decoder: null, ready: Promise.resolve(null!) };
    entry.ready = (async () => {
      const emb = await source;
      const decoder = await this.load(emb.modelVersionId);
      await decoder.client.prepare(imageId, emb.data.slice(0), emb.dtype, emb.originalSize, emb.inputSize);
      entry.decoder = decoder;
      return decoder;
    })();
    this.prepared.set(imageId, entry);
    entry.ready.catch(() => this.prepared.get(imageId) === entry && this.prepared.delete(imageId));
    return entry.ready;
  }

  /** The decoder for `imageId` if it is set or being set to it, without starting anything. */
  current(imageId: number): Promise<VersionDecoder> | null {
    return this.image?.id === imageId ? this.image.ready : null;
  }

  /** Stops every worker; pending decodes reject. */
  terminate(): void {
    for (const { client } of this.loaded.values()) client.terminate();
    this.loaded.clear();
    this.prepared.clear();
    this.image = null;
  }

  private keeps(decoder: VersionDecoder, imageId: number): boolean {
    return this.loaded.get(decoder.model.id)?.client === decoder.client && decoder.client.has(imageId);
  }

  /** Stops the least recently used workers beyond `KEPT_VERSIONS`, never `wanted`'s nor the shown image's. */
  private evict(wanted: number): void {
    for (const versionId of [...this.loaded.keys()]) {
      if (this.loaded.size <= KEPT_VERSIONS) return;
      if (versionId === wanted || versionId === this.image?.versionId) continue;
      this.loaded.get(versionId)!.client.terminate();
      this.loaded.delete(versionId);
    }
  }

  private description(versionId: number): Promise<ModelVersion> {
    let described = this.described.get(versionId);
    if (described === undefined) {
      const asked = this.describe(versionId);
      asked.catch(() => this.described.get(versionId) === asked && this.described.delete(versionId));
      this.described.set(versionId, asked);
      described = asked;
    }
    return described;
  }

  /**
   * The worker cannot send our bearer token: the graphs are fetched here and handed over as blob
   * URLs. The split pair (per-image graph, per-click graph) when the version has it, else the one graph.
   */
  private async fetchAndLoad(versionId: number, client: DecoderClient): Promise<{ model: ModelVersion; info: DecoderInfo }> {
    const model = await this.description(versionId);
    if (model.id !== versionId) throw new Error(`asked for model version ${versionId}, got ${model.id}`);
    const { click_graph_url: clickUrl, image_graph_url: imageUrl } = model;
    const split = clickUrl !== null && imageUrl !== null;
    const graphs = await Promise.all((split ? [clickUrl, imageUrl] : [model.decoder_url]).map(api.fetchBytes));
    const urls = graphs.map((bytes) => URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" })));
    try {
      const { numThreads } = await client.load(urls[0], { imageGraphUrl: urls[1] });
      return { model, info: { mode: split ? "split" : "single", numThreads } };
    } finally {
      urls.forEach((url) => URL.revokeObjectURL(url));
    }
  }
}
