"""Measuring: mergeable accumulators over samples (`add`, `merge`, `to_dict`), so that chunks measured in any process
merge to the same figures.

- `stats.py`: the statistics of `statistics.json`
- `leakage.py`: leakage between splits: personas, exact and near-duplicate queries and conversations
- `minhash.py`: texts as the audit compares them: normalised, digested, sketched (one-permutation MinHash)
- `tokens.py`: token budgets for a tokenizer, and the rows TRL would drop
- `seen.py`: the sample ids kept so far across chunks, packed, to find duplicates
- `secrets.py`: what looks like a secret in a text: the rules, the placeholder filters, digests
"""
