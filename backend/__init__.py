"""The product: users, projects, images, masks, stages, jobs and model versions behind a REST API.

`backend` never imports torch or onnxruntime; it reaches the model only through `model_server`'s public
functions (see `backend/clients/model_server.py`).
"""
