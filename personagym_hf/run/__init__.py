"""Running `encode` over a whole store, in store order: in this process, in worker processes, or in Ray tasks.

- `chunks.py`: one chunk of the store encoded, into memory or into part files (`ChunkJob`, `ChunkTask`, `encode_chunk`)
- `runner.py`: the `Runner` protocol, the in-process runner, and the choice of runner (`open_runner`)
- `local.py`: `LocalRunner`: worker processes of this machine (`--num-proc`)
- `ray_runner.py`: `RayRunner`: Ray tasks (`--engine ray`)
- `job.py`: `encode_store` (chunks in store order, duplicates across chunks), `export_store`, `scan_store`
"""
