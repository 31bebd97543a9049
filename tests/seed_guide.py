"""The seed guide (`fixtures/seed_training_data.md`): its Python snippets run in test_seed_snippets.py, its two shell
snippets in test_scripts.py."""

from pathlib import Path

SEED = Path(__file__).parent / "fixtures" / "seed_training_data.md"
