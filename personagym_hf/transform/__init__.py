"""Transforming: records -> samples -> splits -> rows and Arrow tables, the pure per-record pipeline (no I/O).

- `collect.py`: interaction dict -> `TrainingSample`, and `validate_sample`
- `policy.py`: records -> valid samples under the bad-record policy; duplicates within a pass
- `split.py`: the split of a sample: a salted hash of its persona (or of the sample)
- `groups.py`: `split_by: persona_and_query`: samples grouped before they are split
- `views.py`: the dataset configs, their columns and the chat configs' rows (prompts, persona text)
- `tables.py`: sample dicts -> one Arrow table per config
- `encode.py`: the per-record pipeline, written once: records -> split rows, Arrow tables, statistics, audit
"""
