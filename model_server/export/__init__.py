"""The browser decoder's ONNX graphs: their contract, the torch export, and a runner.

`contract` (the graphs' input/output names and the prompt layout) and `runner` (onnxruntime on the
CPU) need no torch, so the service and the checks that only run graphs import them without it;
`graphs` and `writer` trace the folded decoder (model_server/decoding/) into the files.
"""
