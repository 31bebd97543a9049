"""The splits' pre-pass (run.job.assign_store) counts group keys and nothing else."""

from personagym_hf.config import RunOptions, parse_config
from personagym_hf.read.store import discover_paths
from personagym_hf.run.chunks import ChunkJob, encode_chunk, plan_tasks
from personagym_hf.testing.synth import write_store
from personagym_hf.transform.assign import KEY_FIELDS
from personagym_hf.transform.collect import interaction_to_sample
from personagym_hf.transform.encode import Encoder


def test_a_pre_pass_chunk_counts_each_sample_keys_and_no_statistics(tmp_path):
    files = discover_paths(write_store(tmp_path / "store", 40, personas=8))
    cfg = parse_config({"training_data": {"on_bad_records": "skip"}})
    encoder = Encoder(cfg, split=False, views=False, fields=KEY_FIELDS)
    (task,) = plan_tasks(files, RunOptions(chunk_files=100))
    keys = encode_chunk(ChunkJob(files, encoder, interaction_to_sample, outputs="keys"), task, in_memory=True)
    rows = encode_chunk(ChunkJob(files, encoder, interaction_to_sample, outputs="rows"), task, in_memory=True)
    assert int(keys.keys.pairs()[1].sum()) == len(keys.encoded.kept) == 40  # every kept sample's keys
    assert sum(part.samples for part in keys.encoded.stats.splits.values()) == 0  # no statistics: not needed
    assert sum(part.samples for part in rows.encoded.stats.splits.values()) == 40  # other passes have them
