"""The card's words on its splits: what the `split_by` mode keeps apart and what crosses, how groups were given
their splits, and under `split_by: grid` the table of its cells (persona's split x query's split)."""

from __future__ import annotations

from typing import Any

from ..config import SPLIT_NAMES
from ..transform.assign import GRID_CELLS

KEPT_APART = {
    "persona": "Splits are **persona-disjoint**: no persona appears in two splits.",
    "query": "Splits are **query-disjoint**: no target query (`original_query`, normalised, joined by "
    "`metadata.query_id`) appears in two splits; personas may.",
    "persona_and_query": "Splits are **persona- and query-disjoint**: samples that share a persona or a target query "
    "are one group, in one split.",
    "grid": "Splits hold **personas and queries out apart** (a persona x query grid): no test persona or query is in "
    "train or validation, and `test_unseen_persona` (test personas, train queries) and `test_unseen_query` (train "
    "personas, test queries) measure each kind of generalisation apart; `test` has both unseen.",
    "sample": "Splits are a salted hash of each sample: personas and queries cross splits.",
}
KEYS = {"persona": "persona", "query": "query", "persona_and_query": "group", "grid": "persona and query"}


def split_summary(settings: dict[str, Any]) -> str:
    """One line: what the splits keep apart, and whether an append keeps them where a rebuild would."""
    mode = settings["split_by"]
    line = KEPT_APART[mode]
    how = settings.get("split_assignment", "hashed")
    if mode == "sample" or how == "hashed":
        line += (
            f" A sample's split is a salted hash of its {KEYS.get(mode, 'sample id')} (seed {settings['seed']}), so "
            "appending places it where a rebuild would."
        )
    else:
        line += (
            " Whole groups are balanced to the ratios (`split_assignment: balanced`, seed "
            f"{settings['seed']}); an append keeps every earlier group where it is."
        )
    return line


def splits_markdown(statistics: dict[str, Any]) -> str:
    """What crosses the splits, and the grid's cells; empty when the export has no pre-pass figures."""
    section = statistics.get("split_assignment")
    if not section or "groups" not in section:
        return ""
    groups = section["groups"]
    lines = [
        f"{section['personas_in_several_splits']} of {groups['personas']} personas and "
        f"{section['queries_in_several_splits']} of {groups['queries']} target queries are in more than one split."
    ]
    if section["split_by"] == "grid":
        shares = section["shares"]
        lines += [
            "",
            f"Personas and queries are each assigned to a split, train {shares['train']:.1%}, validation "
            f"{shares['validation']:.1%} and test {shares['test']:.1%} of each (train the square root of its "
            "ratio, so that both in train gives the train ratio); a sample goes to the split of its "
            f"cell. {statistics.get('held_out', 0)} samples, a validation persona asking a test query or the reverse, "
            "are in no split.",
            "",
            "| persona \\ query | " + " | ".join(SPLIT_NAMES) + " |",
            "|---|" + "---|" * len(SPLIT_NAMES),
        ]
        for persona in SPLIT_NAMES:
            cells = []
            for query in SPLIT_NAMES:
                cell = section["cells"][f"{persona}/{query}"]
                name = GRID_CELLS[persona, query] or "held out"
                cells.append(f"{cell['samples']} {name}")
            lines.append(f"| {persona} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["split_summary", "splits_markdown"]
