"""Transforming: records -> samples -> splits -> rows and Arrow tables, the pure per-record pipeline (no I/O).

- `collect.py`: interaction dict -> `TrainingSample`, and `validate_sample`
- `policy.py`: records -> valid samples under the bad-record policy; duplicates within a pass
- `split.py`: a salted hash of a key as a split; what the summary says of the splits
- `assign.py`: the split of each group (persona, query, both, or the grid's cells), balanced to the ratios
- `views.py`: the dataset configs, their columns and the chat configs' rows (prompts, persona text)
- `tables.py`: sample dicts -> one Arrow table per config
- `redact.py`: `--redact-secrets`: every secret in a sample replaced by a typed placeholder
- `encode.py`: the per-record pipeline, written once: records -> split rows, Arrow tables, statistics, audit
"""
