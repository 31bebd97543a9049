"""The leaky store of conftest.py (`LEAKY`) as samples with their splits (`leaky_samples`), and the leakage its
audit finds between each pair of splits (`EXPECTED_PAIRS`, compared after `strip_estimates`): the audit's tests,
the export's, the card's and the command line's read them from here."""

from conftest import LEAKY, leaky_interaction

from personagym_hf.config import DEFAULT_RATIOS
from personagym_hf.measure import leakage as audit_module
from personagym_hf.transform.collect import interaction_to_sample
from personagym_hf.transform.split import split_of


def leaky_samples(keys=tuple(LEAKY)) -> list[tuple[dict, str]]:
    samples = [interaction_to_sample(leaky_interaction(key)).to_dict() for key in keys]
    return [(sample, split_of(sample, 42, DEFAULT_RATIOS)) for sample in samples]


def strip_estimates(leakage: dict) -> dict:
    """The near examples' estimated similarities, checked on their own (they are MinHash estimates)."""
    for pair in leakage["pairs"].values():
        for name in audit_module.FIELDS:
            pair[name]["near_examples"] = [example[:2] for example in pair[name]["near_examples"]]
    return leakage


def field(rows, exact, near, exact_examples=(), near_examples=()):
    return {
        "rows": rows,
        "exact": exact,
        "exact_share": round(exact / rows, 4),
        "exact_examples": [list(e) for e in exact_examples],
        "near": near,
        "near_share": round(near / rows, 4),
        "near_examples": [list(e) for e in near_examples],
    }


NO_PERSONAS = {"shared": 0, "share": 0.0, "examples": []}
EXPECTED_PAIRS = {
    "train-validation": {
        "smaller": "validation",
        "personas": NO_PERSONAS,
        "original_query": field(1, 1, 1, [("sample_v1", "sample_t3")]),
        "initial_query": field(1, 0, 1, near_examples=[("sample_v1", "sample_t3")]),
        "conversation": field(1, 0, 1, near_examples=[("sample_v1", "sample_t3")]),
    },
    "train-test": {
        "smaller": "test",  # 3 samples each: the later split is counted
        "personas": NO_PERSONAS,
        "original_query": field(3, 1, 1, [("sample_x1", "sample_t1")]),
        "initial_query": field(3, 1, 1, [("sample_x2", "sample_t2")]),
        "conversation": field(3, 0, 1, near_examples=[("sample_x2", "sample_t2")]),
    },
    "validation-test": {
        "smaller": "validation",
        "personas": NO_PERSONAS,
        "original_query": field(1, 0, 0),
        "initial_query": field(1, 0, 0),
        "conversation": field(1, 0, 0),
    },
}
