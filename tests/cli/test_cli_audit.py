"""`personagym-hf audit` and `personagym-hf tokens` on hand-made stores and their exports."""

import subprocess
import sys

import pytest
import tiny_tokenizer
import yaml
from leaky import leaky_samples

from personagym_hf.cli.main import main
from personagym_hf.config import format_flags
from personagym_hf.measure.leakage import LeakageAudit, report_lines
from personagym_hf.transform.collect import interaction_to_sample
from personagym_hf.write.files import dumps_pretty


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def export(store, out, capsys, *extra):
    assert main(["export", "--interactions", str(store), "--output", str(out), "-q", *extra]) == 0
    capsys.readouterr()
    return out


def test_audit_of_a_store_prints_the_report(leaky_store, hashed, capsys):
    code, out, err = run(capsys, "audit", "--interactions", str(leaky_store), "-q", "--config", str(hashed))
    assert code == 0 and err == ""
    assert out == "\n".join(report_lines(LeakageAudit().add_all(leaky_samples()).to_dict())) + "\n"
    lines = out.splitlines()
    assert lines[1:4] == [
        "train <-> validation (3 and 1 samples): 0 personas shared",
        "  original_query: 1 of 1 validation rows (100.0%) have an exact duplicate in train, 1 (100.0%) an exact or "
        "near one",
        "    exact: sample_v1 = sample_t3",
    ]


@pytest.mark.parametrize("max_leak, code", [("0.4", 1), ("1", 0)], ids=["leaks", "nothing_above"])
def test_audit_max_leak_sets_the_exit_code(leaky_store, hashed, capsys, max_leak, code):
    argv = ["audit", "--interactions", str(leaky_store), "-q", "--max-leak", max_leak, "--config", str(hashed)]
    got, _out, err = run(capsys, *argv)
    assert got == code
    if code:
        assert err == (
            "leaks above --max-leak 40.0%:\n"
            "  train <-> validation: 100.0% of validation original_queries have an exact or near duplicate in train\n"
            "  train <-> validation: 100.0% of validation initial_queries have an exact or near duplicate in train\n"
            "  train <-> validation: 100.0% of validation conversations have an exact or near duplicate in train\n"
        )
    else:
        assert err == "no leak above --max-leak 100.0%\n"


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"include_persona": False},  # no config has persona_id or original_query: the export cannot show them
        {"include_trajectory": False, "include_full_conversation": False},  # turns from messages; no persona either
    ],
    ids=["full", "no_persona", "no_turns"],
)
def test_audit_of_an_export_is_the_audit_of_its_store(leaky_store, tmp_path, capsys, flags):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"training_data": {"format": flags}}), encoding="utf-8")
    config = str(config)
    out = export(leaky_store, tmp_path / "out", capsys, "--config", config)
    _, from_store, _ = run(capsys, "audit", "--interactions", str(leaky_store), "-q", "--json", "--config", config)
    _, from_parquet, _ = run(capsys, "audit", "--data", str(out / "hf_dataset"), "--json")
    _, from_jsonl, _ = run(capsys, "audit", "--data", str(out), "--json")
    if not format_flags(flags)["include_persona"]:  # no config has persona_id or original_query then
        assert '"original_query": {\n        "rows": 0,' in from_parquet and from_parquet != from_store
        return
    assert from_parquet == from_store
    if not flags:
        assert from_jsonl == from_store
    else:  # the JSONL rows have only the fields the flags allow: what they lack is not compared
        assert from_jsonl != from_store


def test_audit_json_is_the_leakage_section(leaky_store, hashed, capsys):
    argv = ["audit", "--interactions", str(leaky_store), "-q", "--json", "--exact-only", "--config", str(hashed)]
    _, out, _ = run(capsys, *argv)
    assert out == dumps_pretty(LeakageAudit(near=False).add_all(leaky_samples()).to_dict()).decode()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "{tmp}"], "{tmp}: no export here (expected data/<config>/*.parquet of an hf_dataset/ folder, or "
         "train_samples.jsonl); pass --data with an export folder or its hf_dataset/"),
        (["--data", "{tmp}", "--demo"], "pass either --data or --interactions/--demo, not both"),
    ],
    ids=["not_an_export", "two_sources"],
)  # fmt: skip
def test_audit_errors_are_one_line(tmp_path, capsys, argv, message):
    code, out, err = run(capsys, "audit", *(a.format(tmp=tmp_path) for a in argv))
    assert (code, out) == (1, "")
    assert err == f"personagym-hf audit: error: {message.format(tmp=tmp_path)}\n"


def test_audit_max_leak_must_be_a_share(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["audit", "--demo", "--max-leak", "5"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith(
        "error: argument --max-leak: expected a share between 0 and 1 (0.05 is 5%), got '5'\n"
    )


def test_audit_without_rensa_finds_near_duplicates_as_the_export_does(leaky_store, hashed, capsys, monkeypatch):
    """rensa is no longer needed: the default install audits near duplicates, in `audit` as in `export`, and says
    nothing on stderr; `--exact-only` leaves them out."""
    monkeypatch.setitem(sys.modules, "rensa", None)
    argv = ["audit", "--interactions", str(leaky_store), "--config", str(hashed)]
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert out == "\n".join(report_lines(LeakageAudit().add_all(leaky_samples()).to_dict())) + "\n"
    exact = "\n".join(report_lines(LeakageAudit(near=False).add_all(leaky_samples()).to_dict())) + "\n"
    assert run(capsys, *argv, "--exact-only") == (0, exact, "")
    assert exact.splitlines()[0] == "exact duplicates only, after normalising case, whitespace and punctuation"


def test_audit_of_the_demo_store(capsys):
    code, out, _ = run(capsys, "audit", "--demo", "-q")
    assert code == 0
    assert out.splitlines()[1] == "train <-> validation (64 and 8 samples): 0 personas shared"


TOKEN_REPORT = [
    "messages: 4 of 4 rows rendered; tokens min 8, p50 11, p95 15, max 15 (mean 11.5, total 46)",
    "  over --max-length 10: 3 rows (75.0%)",
    "  without assistant tokens: 1 rows (e.g. sample_k3)",
    "  assistant tokens in the loss mask: 21.7%; rows left with none after truncation: 1",
    "  rows by tokens: 5-8: 1, 9-16: 3",
    "query_rewrite: 5 rows; query tokens p50 4, p95 11, max 11; original_query tokens p50 2, p95 2, max 2",
    # token_store.py counts these by hand with a one-line instruction; the default one and the persona's three lines
    # put 43 tokens before "<|user|>": k1 43 + 5 + 4 = 52, k2 49, k3 58, k4 58, every completion past the 10th
    "last_turn: 3 of 3 rows rendered; tokens p50 12, p95 15, max 15; completion tokens p50 3, p95 7, max 7",
    "  over --max-length 10: 2 rows; completion past it (TRL drops the row): 1 (e.g. sample_k4)",
    "rewrite: 5 of 5 rows rendered; tokens p50 52, p95 58, max 58; completion tokens p50 4, p95 4, max 4",
    "  over --max-length 10: 5 rows; completion past it (TRL drops the row): 5 (e.g. sample_k1/styled, "
    "sample_k1/noisy_0, sample_k2/styled)",
    "before training: TRL drops 7 rows whose completion lies past --max-length 10 (last_turn 1, rewrite 5, messages "
    "with assistant_only_loss=True 1)",
]


def test_tokens_of_a_store_and_of_its_export(token_store, tiny, tmp_path, capsys):
    code, out, err = run(capsys, "tokens", "--tokenizer", str(tiny), "--max-length", "10", "--interactions",
                         str(token_store), "-q")  # fmt: skip
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("tokenizer tiny-gen@") and lines[0].endswith(
        " (its own chat template, with generation marks)"
    )
    assert lines[1:] == TOKEN_REPORT
    exported = export(token_store, tmp_path / "out", capsys)
    for data in (exported / "hf_dataset", exported):
        assert run(capsys, "tokens", "--tokenizer", str(tiny), "--max-length", "10", "--data", str(data))[1] == out


def test_tokens_json_is_keyed_by_tokenizer_and_template(token_store, tiny, capsys):
    import json

    _, out, _ = run(capsys, "tokens", "--tokenizer", str(tiny), "--interactions", str(token_store), "-q", "--json")
    (key, budget), = json.loads(out).items()  # fmt: skip
    assert key == f"tiny-gen@{budget['chat_template_sha256'][:12]}"
    assert budget["messages"]["tokens"] == {"min": 8, "p50": 11, "p95": 15, "max": 15, "mean": 11.5, "total": 46}


def test_tokens_with_a_chat_template_file_and_the_demo_store(tiny, tmp_path, capsys):
    template = tmp_path / "no_system.jinja"
    template.write_text(tiny_tokenizer.NO_SYSTEM_TEMPLATE, encoding="utf-8")
    code, out, _ = run(capsys, "tokens", "--tokenizer", str(tiny / "tokenizer.json"), "--chat-template",
                       str(template), "--demo", "-q")  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[0].endswith(" (chat template: file no_system.jinja, no generation marks)")
    assert lines[1].startswith("messages: 80 of 80 rows rendered; tokens min ")


def test_tokens_errors_are_one_line(tmp_path, tiny, capsys, monkeypatch):
    code, _out, err = run(capsys, "tokens", "--tokenizer", str(tmp_path / "none"), "--demo", "-q")
    assert code == 1
    assert err == (
        f"personagym-hf tokens: error: {tmp_path / 'none'}: no such tokenizer folder or tokenizer.json; pass "
        "--tokenizer with a local tokenizer (downloads are never made)\n"
    )
    monkeypatch.setitem(sys.modules, "transformers", None)
    code, _out, err = run(capsys, "tokens", "--tokenizer", str(tiny), "--demo", "-q")
    assert code == 1
    assert err == (
        "personagym-hf tokens: error: token counting needs transformers, which is not installed: "
        "pip install 'personagym-hf[tokens]'\n"
    )


@pytest.mark.parametrize("command", ["audit", "tokens"])
def test_help_of_the_audits_imports_no_heavy_library(command):
    code = (
        "import sys; from personagym_hf.cli.main import main\n"
        f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('numpy', 'pyarrow', 'rensa', 'transformers', 'tokenizers', 'jinja2', 'datasets')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]")


def test_python_api_on_the_demo_store_gives_what_the_cli_prints(tmp_path, capsys):
    import json

    from personagym_hf.config import parse_config
    from personagym_hf.measure.tokens import TokenBudget, load_tokenizer
    from personagym_hf.read.demo import demo_store_path
    from personagym_hf.run.job import iter_store
    from personagym_hf.transform.assign import KeyCounts, resolve
    from personagym_hf.transform.policy import Rejections, iter_samples
    from personagym_hf.transform.views import chat_views

    settings = parse_config({})
    samples = [
        sample.to_dict()
        for sample, _record in iter_samples(iter_store(demo_store_path()), interaction_to_sample, Rejections())
    ]
    counts = KeyCounts()
    for sample in samples:
        counts.add(sample)
    splits = resolve(counts, "persona", "balanced", settings.ratios, settings.seed)
    leakage = LeakageAudit().add_all((s, splits.split_of(s)) for s in samples).to_dict()
    assert json.loads(run(capsys, "audit", "--demo", "-q", "--json")[1]) == leakage
    assert leakage["samples"] == {"train": 64, "validation": 8, "test": 8}
    folder = tiny_tokenizer.build(tmp_path / "tiny-gen", tiny_tokenizer.GENERATION_TEMPLATE)
    tokenizer = load_tokenizer(folder)
    budget = TokenBudget(tokenizer, max_length=64, views=chat_views(settings)).add_all(samples).to_dict()
    cli = json.loads(
        run(capsys, "tokens", "--tokenizer", str(folder), "--max-length", "64", "--demo", "-q", "--json")[1]
    )
    assert cli == {tokenizer.key: budget}
    assert budget["messages"]["rows"] == 80 and budget["query_rewrite"]["rows"] == 103
