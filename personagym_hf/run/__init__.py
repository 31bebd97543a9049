"""Running `encode` over a whole store, in store order: in this process, in worker processes, or in Ray tasks.

- `chunks.py`: `encode` run on one chunk of files into memory or part files; `LocalRunner`'s worker processes
- `ray_runner.py`: `--engine ray`: the chunks encoded and the shards written by Ray tasks (`RayRunner`)
- `job.py`: `encode_store` (chunks in store order, duplicates across chunks) and `export_store`: a whole store
"""
