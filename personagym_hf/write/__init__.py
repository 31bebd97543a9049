"""Writing: the output folder of an export, all or nothing.

- `files.py`: streaming, atomic JSON and JSONL writers
- `parquet.py`: Parquet shards of one config's split, planned from row sizes, written by any process
- `background.py`: one thread that runs Parquet and JSON writes in order while the export goes on encoding
- `planned_shards.py`: with workers: each split's shards planned in the parent, written by the workers
- `folder.py`: the output folder as one transaction: lock, staging folder, swap
- `append.py`: the export already in the folder, read for an append
- `manifest.py`: `.personagym-export.json`: what an export was made with, what an append checks
- `exporter.py`: `Exporter`: the outputs of one export, a chunk at a time
"""
