"""The ppopt (personalized prompt optimization) JSONL: one flat line per `query_rewrite` row, and its
upload as a loadable dataset repo. `scripts/prepare_ppopt_hf_jsonl.py` and
`scripts/upload_hf_dataset.py` are thin wrappers over these two functions.

Fields of a line (the `query_rewrite` config): `sample_id`, `persona_id`, `persona_features` (an
object), `variant` (`styled` or `noisy_<i>`), `query`, `noise_type` (`none` for the styled query),
`applied_strategies`, `original_query` (the target).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson

from .schema import TrainingSample
from .store import BadRecord, iter_file
from .views import QUERY_REWRITE_SPECS, query_rewrite_rows
from .writers import JsonlWriter


def prepare_ppopt_jsonl(inputs: list[str | Path], output: str | Path) -> int:
    """Samples (an export's `*_samples.json` or `.jsonl`) -> ppopt lines; returns the number of lines."""
    out = JsonlWriter(output)
    try:
        for source in inputs:
            for record in iter_file(Path(source)):
                if isinstance(record, BadRecord):
                    raise ValueError(f"{record.describe()}: expected an export's samples file")
                sample = TrainingSample.from_dict(record.data).to_dict()  # fields the format flags left out are empty
                for row in query_rewrite_rows(sample):
                    out.add(row)
    except BaseException:
        out.abort()
        raise
    out.commit()
    return out.count


def _ppopt_card(repo_id: str, splits: dict[str, int], existing: str | None, languages: list[str]) -> str:
    from huggingface_hub import DatasetCard

    from . import __version__
    from .card import TAGS, card_dataset_info, keep_user_parts, set_languages, size_category, template_path, user_parts
    from .schema import yaml_features

    data, before, after = user_parts(existing)
    if languages:  # from the rows' persona_features; none found: the card's stay
        set_languages(data, languages)
    data.task_categories, data.tags = ["text-generation"], TAGS + ["ppopt"]
    data.size_categories = [size_category(sum(splits.values()))]
    data.pretty_name = data.get("pretty_name") or "PersonaGym ppopt queries"
    data.configs = [
        {"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}.jsonl"} for s in splits]}
    ]
    ppopt_splits = [{"name": name, "num_bytes": 0, "num_examples": rows} for name, rows in splits.items()]
    data.dataset_info = card_dataset_info(
        {"default": {"features": yaml_features(QUERY_REWRITE_SPECS), "splits": ppopt_splits}}
    )
    card = DatasetCard.from_template(
        data,
        template_path=str(template_path("ppopt_template.md")),
        repo_id=repo_id,
        version=__version__,
        pretty_name=data.pretty_name,
        splits=list(splits.items()),
    )
    return str(keep_user_parts(card, before, after))


def _count_lines(data: bytes) -> int:
    return sum(1 for line in data.splitlines() if line.strip())


def _features(data: bytes):
    """(persona_features, 1) of every line, for `card.languages_of`."""
    return ((orjson.loads(line).get("persona_features"), 1) for line in data.splitlines() if line.strip())


def upload_jsonl(
    file: str | Path,
    repo_id: str,
    *,
    split: str = "train",
    private: bool | None = None,
    token: str | None = None,
    max_attempts: int = 5,
    backoff: float = 1.0,
):
    """Upload a ppopt JSONL as `data/<split>.jsonl` with a card listing every split the repo then holds,
    in one commit (other splits uploaded earlier stay)."""
    from huggingface_hub import hf_hub_download

    from .card import languages_of
    from .hub import commit_with_retries, ensure_repo, hub_api, plan_files, remote_state

    file = Path(file)
    for number, line in enumerate(file.read_bytes().splitlines(), start=1):
        if line.strip():
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise ValueError(f"{file}, line {number}: not JSON Lines ({e})") from None
    api = hub_api(token)
    with tempfile.TemporaryDirectory(prefix="personagym_upload_") as staging:

        def replan():
            _exists, head, _private, remote = remote_state(api, repo_id, "main")
            splits, contents = {}, [file.read_bytes()]
            for path in sorted(remote):
                if path.startswith("data/") and path.endswith(".jsonl") and path != f"data/{split}.jsonl":
                    local = hf_hub_download(repo_id, path, repo_type="dataset", revision=head, token=token)
                    contents.append(Path(local).read_bytes())
                    splits[path[len("data/") : -len(".jsonl")]] = _count_lines(contents[-1])
            splits[split] = _count_lines(contents[0])
            languages = languages_of(pair for data in contents for pair in _features(data))
            return plan_files(
                api,
                repo_id,
                {f"data/{split}.jsonl": file},
                lambda existing: _ppopt_card(repo_id, dict(sorted(splits.items())), existing, languages),
                revision="main",
                private=private,
                staging=Path(staging),
                token=token,
            )

        plan = replan()
        ensure_repo(api, plan, private)
        return commit_with_retries(
            api,
            plan,
            replan,
            message=f"Upload {split} split with personagym-hf",
            max_attempts=max_attempts,
            backoff=backoff,
        )
