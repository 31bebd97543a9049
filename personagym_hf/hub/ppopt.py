"""The ppopt (personalized prompt optimization) JSONL: one flat line per `query_rewrite` row, and its
upload as a loadable dataset repo. `scripts/prepare_ppopt_hf_jsonl.py` and
`scripts/upload_hf_dataset.py` are thin wrappers over these two functions.

Fields of a line (the `query_rewrite` config): `sample_id`, `persona_id`, `persona_features` (an
object), `variant` (`styled` or `noisy_<i>`), `query`, `noise_type` (`none` for the styled query),
`applied_strategies`, `original_query` (the target). Samples exported with `include_persona: false` have no
persona fields, and their lines none either: the columns are that config's for those flags (`views.config_specs`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson

from ..config import FORMAT_FLAGS
from ..read.store import BadRecord, iter_file
from ..schema import TrainingSample
from ..transform.views import QUERY_REWRITE_SPECS, config_specs, query_rewrite_rows
from ..wording import plural
from ..write.files import JsonlWriter


def prepare_ppopt_jsonl(inputs: list[str | Path], output: str | Path) -> int:
    """Samples (an export's `*_samples.json` or `.jsonl`) -> ppopt lines; returns the number of lines."""
    out = JsonlWriter(output)
    with_persona: bool | None = None  # what the first sample says: the samples of one export all agree
    try:
        for source in inputs:
            for record in iter_file(Path(source)):
                if isinstance(record, BadRecord):
                    raise ValueError(f"{record.describe()}: expected an export's samples file")
                has_persona = "persona_id" in record.data  # exported with include_persona: the flag's fields
                if with_persona is None:
                    with_persona = has_persona
                    columns = query_rewrite_columns(with_persona)
                elif has_persona != with_persona:
                    which = "with" if has_persona else "without"
                    which += f" persona fields, after samples {'without' if has_persona else 'with'} them"
                    where = BadRecord(record.source, record.where, "").location()
                    raise ValueError(f"{where}: a sample {which}; give the samples of one export")
                sample = TrainingSample.from_dict(record.data).to_dict()  # fields the format flags left out are empty
                for row in query_rewrite_rows(sample, columns):
                    out.add(row)
    except BaseException:
        out.abort()
        raise
    out.commit()
    return out.count


def query_rewrite_columns(include_persona: bool) -> list[str]:
    """The columns of a ppopt line: the `query_rewrite` config's, for samples exported with or without persona."""
    flags = {**dict.fromkeys(FORMAT_FLAGS, True), "include_persona": include_persona}
    return list(config_specs(flags)["query_rewrite"])


def ppopt_columns(file: str | Path) -> list[str]:
    """The columns of a ppopt JSONL, checked on every line (raises ValueError naming the line)."""
    file = Path(file)
    known = [query_rewrite_columns(True), query_rewrite_columns(False)]
    columns: list[str] | None = None
    for number, line in enumerate(file.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"{file}, line {number}: not JSON Lines ({e})") from None
        keys = list(row) if isinstance(row, dict) else None
        if columns is None and keys in known:
            columns = keys
        elif keys != columns:
            expected = " or ".join(str(names) for names in ([columns] if columns else known))
            raise ValueError(f"{file}, line {number}: not a ppopt line (expected the columns {expected})")
    return columns or known[0]


def _ppopt_card(
    repo_id: str, splits: dict[str, int], existing: str | None, columns: list[str], languages: list[str]
) -> str:
    from huggingface_hub import DatasetCard

    from ..card.render import (
        TAGS,
        card_dataset_info,
        keep_user_parts,
        set_languages,
        size_category,
        template_path,
        user_parts,
    )
    from ..schema import yaml_features
    from ..version import __version__

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
        {
            "default": {
                "features": yaml_features({name: QUERY_REWRITE_SPECS[name] for name in columns}),
                "splits": ppopt_splits,
            }
        }
    )
    card = DatasetCard.from_template(
        data,
        template_path=str(template_path("ppopt_template.md")),
        repo_id=repo_id,
        version=__version__,
        pretty_name=data.pretty_name,
        splits=list(splits.items()),
        columns=columns,
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
    allow_secrets: bool = False,
):
    """Upload a ppopt JSONL as `data/<split>.jsonl` with a card listing every split the repo then holds,
    in one commit (other splits uploaded earlier stay). Refused while a line holds what looks like a secret
    (`safety.py`), unless `allow_secrets`."""
    from huggingface_hub import hf_hub_download

    from ..card.render import languages_of
    from .push import PushError, commit_with_retries, ensure_repo, hub_api, plan_files, remote_state
    from .safety import kinds_of, scan_text

    file = Path(file)
    columns = ppopt_columns(file)
    found = [] if allow_secrets else scan_text(file, file.name)
    if found:
        places = "; ".join(finding.describe() for finding in found[:3]) + ("; ..." if len(found) > 3 else "")
        raise PushError(
            f"refusing to upload: {plural(len(found), 'string')} in {file} {'looks' if len(found) == 1 else 'look'} "
            f"like secrets ({kinds_of(found)}): {places}; "
            "export with --redact-secrets and prepare the file again, or pass --allow-secrets to upload them"
        )
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
                lambda existing: _ppopt_card(repo_id, dict(sorted(splits.items())), existing, columns, languages),
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
