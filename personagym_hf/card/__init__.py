"""The dataset card, rendered from the template in `dataset_card/`.

- `render.py`: the card: metadata, `dataset_info`, configs and the template
- `sections.py`: the card's Markdown for the leakage, token, training and redacted-secrets sections
- `splits.py`: the card's words on its splits, and the grid's cells
"""
