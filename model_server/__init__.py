"""Everything neural: SAM modules, predictor, automatic masks, detector, training, ONNX export and
the embedding service. This package never imports the product (`backend`, SQLAlchemy, Celery), and
its top level imports nothing heavy so that CLI calls and the backend stay fast."""
