"""The engine's output and input: SA-1B / COCO export (streamed or as a job) and COCO import."""
