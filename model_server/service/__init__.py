"""What the product calls on the model: image embeddings, the files they and the checkpoints live in.

* `embedding_model`: SAM's image encoder loaded once, batched, thread-safe (the backend's embedded
  mode runs it in process);
* `server`: the same behind HTTP, one process per GPU, concurrent requests micro-batched
  (``python -m model_server serve``); its wire format and value types are `model_server.api`;
* `embedding_file`: the one-embedding-per-file format the backend stores and serves (numpy only);
* `embed`: image files → embedding files, the offline path (``python -m model_server embed``);
* `weights`: checkpoint files as the product registers them (untrained weights, strict checks,
  the browser decoder export).

This package's own import pulls in nothing: the backend reads `embedding_file` without torch.
"""
