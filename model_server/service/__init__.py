"""The implementations of `model_server.api.ModelService` and what they are built from.

* `in_process`: every operation in this process, on storage keys (the backend's embedded mode, and
  what the HTTP service runs);
* `server`: the same behind HTTP, one process per GPU (``python -m model_server serve --storage URL``),
  concurrent embeds micro-batched (`batcher`), long operations polled and cancellable;
  `http_client`: its client (torch-free), `http_schemas`: the JSON bodies both share;
* `embedding_model`: SAM's image encoder loaded once, batched, thread-safe;
* `stored`: the stored images and embeddings (keys, decoding); `embedding_file`: the embedding
  object's format (numpy only); `wire`: the browser's encodings of an embedding;
* `embed`: image files → embedding files, the offline path (``python -m model_server embed``);
* `weights`: checkpoint files (untrained weights, strict checks, the encoder's identity, the
  browser decoder export).

This package's own import pulls in nothing: the client and the file formats load without torch.
"""
