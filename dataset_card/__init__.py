"""The dataset card template, installed as `personagym_hf.dataset_card`."""
