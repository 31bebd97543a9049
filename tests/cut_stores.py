"""Stores that a run's chunks must cut through without changing a byte of the export: JSON Lines files read in byte
ranges (`jsonl_store`) and JSON arrays read in pieces (`array_store`), each with a bad record and a duplicate id in
a later file. The local export's tests, the builder's and the Ray engine's use them."""

import json
from pathlib import Path


def jsonl_store(folder: Path) -> Path:
    """Three JSON Lines files of 150 interactions each, with a duplicate id in a later file, a bad line and a blank
    line: what byte ranges must cut through without changing a byte of the export."""
    from personagym_hf.testing.synth import iter_interactions

    records = list(iter_interactions(450, personas=40, seed=9, reply_chars=80))
    folder.mkdir(parents=True)
    for number in range(3):
        lines = [json.dumps(record) for record in records[number * 150 : (number + 1) * 150]]
        if number == 2:
            lines[70:70] = ["not json", "", json.dumps(records[10])]  # a bad line, a blank one, a duplicate id
        (folder / f"part{number}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def array_store(folder: Path) -> Path:
    """Three JSON array files of 150 interactions each: pretty-printed, with a damaged item and a duplicate id in a
    later file, and the last cut short inside its last item: what pieces must cut through without changing a byte."""
    from personagym_hf.testing.synth import iter_interactions

    records = list(iter_interactions(450, personas=40, seed=9, reply_chars=80))
    folder.mkdir(parents=True)
    for number in range(3):
        items = [json.dumps(record, indent=1) for record in records[number * 150 : (number + 1) * 150]]
        if number == 1:
            items[70:70] = ['{"interaction_id": nul}', json.dumps(records[10])]  # a damaged item, a duplicate id
        text = "[\n" + ",\n".join(items) + "\n]\n"
        (folder / f"part{number}.json").write_text(text[:-200] if number == 2 else text, encoding="utf-8")
    return folder
