"""Reading: interaction stores as upstream writes them, one record at a time, cut into chunks of work; and what an
export or upstream wrote, read back.

- `records.py`: `Record` and `BadRecord`, the types every layer passes around
- `sizes.py`: `ReadSizes`, how much reading holds and reads at a time
- `store.py`: finding a store's files and reading them one record at a time
- `jsonscan.py`: where the items of a top-level JSON array begin and end (a vectorised structural scan)
- `plan.py`: a store cut into chunks: runs of whole files, byte ranges of a JSONL file, pieces of a JSON array
- `exported.py`: an existing export read back row by row, for the audits
- `token_usage.py`: upstream `token_usage*.json` files merged into one
- `demo.py`: the demo store shipped in the package
"""
