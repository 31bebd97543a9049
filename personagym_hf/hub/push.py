"""Publishing an exported `hf_dataset/` folder to the Hub:
token check -> plan -> safety gate -> viewer checks -> one commit -> verify.

- **Token check** (`auth.py`): without a token the Hub accepts, a push stops before uploading anything, and
  a dry run says so (and that, without one, a private repo looks missing).
- **Plan**: compare the folder with the repo at the branch head by content hash (git blob sha1, or
  sha256 for LFS files), so unchanged files are never uploaded and identical data makes no commit.
  Shards under `data/` that the folder no longer has are deleted in the same commit.
- **Safety gate** (`safety.py`): every string of the files to upload, the staged card included, is scanned for
  secrets; the push is refused, naming them, while any finding is not accepted by the folder's reviewed baseline.
- **Viewer checks** (`viewer.py`): the staged files against the dataset viewer's limits, one line per problem.
- **One commit** with `parentCommit` set: the card, the shards, `statistics.json` and `provenance.json`
  land together or not at all, so a card never describes files that are not there. Shards a stopped push
  uploaded stay in the repo's storage and are not sent again (`uploads.py`).
- **Retries**: `huggingface_hub` retries uploads itself but (rightly) not the commit call, since a lost
  response may hide a commit that happened. Before retrying, we re-read the branch head and re-plan: if
  the repo already holds our files, the commit landed and we stop, so there is never a duplicate commit.
  Every request has a timeout (`connection.py`).
- **Verify**: every config and split is loaded back with `datasets` at the new commit and its row count
  and features compared with the folder's `dataset_info`.

The token goes to `HfApi` and nowhere else: it is never printed, logged or written.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..card.render import LICENSES_URL
from ..wording import plural
from . import connection
from .auth import Auth, check_auth
from .connection import DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT
from .uploads import UploadProgress, UploadStats, stored_on_hub

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
RETRY_STATUSES = {408, 409, 412, 429, 500, 502, 503, 504}


class PushError(RuntimeError):
    """A push that cannot go on; the message says what to do."""


@dataclass
class FilePlan:
    path: str
    size: int
    action: str  # "add" | "update" | "delete"


@dataclass
class PushPlan:
    repo_id: str
    revision: str
    exists: bool
    head: str | None
    private: bool | None  # the repo's visibility now (None: no repo yet)
    make_private: bool | None = None  # what was asked for (None: leave as is)
    files: list[FilePlan] = field(default_factory=list)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)  # config -> split -> rows
    local: dict[str, Path] = field(default_factory=dict)  # path in repo -> local file
    auth: Auth | None = None  # who the push runs as (None: not checked)
    created: bool = False  # the push created the repo (`exists` is then true, but the plan was to create it)
    card_license: str | None = None  # of the card as it will be pushed
    card_languages: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # what the push changed besides files (visibility)
    refusal: str | None = None  # why the files would not be pushed as they are (the viewer checks)
    unchanged: dict[str, int] = field(default_factory=dict)  # path -> size of files the repo holds as they are

    @property
    def upload_bytes(self) -> int:
        return sum(f.size for f in self.files if f.action != "delete")

    @property
    def existed(self) -> bool:
        """The repo was there before the push (what the plan describes, also once the push has run)."""
        return self.exists and not self.created

    def visibility(self) -> str:
        def name(private: bool | None) -> str:
            return "private" if private else "public"

        if self.make_private is None:
            return name(self.private) if self.existed else "public (the Hub's default)"
        if self.existed and self.private != self.make_private:
            return f"{name(self.private)} -> {name(self.make_private)}"
        return name(self.make_private)

    def describe(self) -> str:
        first = f"dataset repo {self.repo_id} (revision {self.revision}, {self.visibility()})"
        if self.existed:
            first = f"update {first}"
        elif self.auth is not None and self.auth.anonymous:
            first = f"create {first}, or update it if it is private: without a token the Hub shows no private repo"
        else:
            first = f"create {first}"
        lines = [first]
        if self.auth is not None:
            lines.append(f"  token: {self.auth.summary}")
        lines.append(
            f"  license: {self.card_license or f'none set; pass --license with an identifier from {LICENSES_URL}'}"
        )
        languages = ", ".join(self.card_languages) or "none found in persona_features; pass --language"
        lines.append(f"  language: {languages}")
        if not self.files:
            lines.append("  nothing to upload: the repo already holds this data")
        for item in self.files:
            size = "" if item.action == "delete" else f" ({plural(item.size, 'byte', grouped=True)})"
            lines.append(f"  {item.action:<6} {item.path}{size}")
        for config, splits in self.splits.items():
            counts = ", ".join(f"{name} {plural(rows, 'row', grouped=True)}" for name, rows in splits.items())
            lines.append(f"  config {config}: {counts}")
        lines.append(f"  {plural(self.upload_bytes, 'byte', grouped=True)} to upload")
        return "\n".join(lines)


@dataclass
class PushResult:
    plan: PushPlan
    commit_sha: str | None = None
    commit_url: str | None = None
    committed: bool = False
    verified: dict[str, dict[str, int]] | None = None
    upload: UploadStats | None = None  # bytes sent and found on the Hub (None: nothing to upload was planned)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hub_api(token: str | bool | None):
    from huggingface_hub import HfApi

    return HfApi(token=token)


def remote_state(api, repo_id: str, revision: str) -> tuple[bool, str | None, bool | None, dict[str, Any]]:
    """(exists, head sha, private, {path: sibling}) of the repo at `revision`."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    def read(revision: str | None):
        return connection.retrying(
            lambda: api.repo_info(
                repo_id, repo_type=REPO_TYPE, revision=revision, files_metadata=True, timeout=connection.timeout()
            ),
            f"reading {repo_id}",
        )

    try:
        info = read(revision)
    except RevisionNotFoundError:
        info = read(None)
        return True, None, info.private, {}
    except RepositoryNotFoundError:
        return False, None, None, {}
    return True, info.sha, info.private, {s.rfilename: s for s in info.siblings or []}


def _same(local: bytes, sibling) -> bool:
    if sibling.lfs is not None:
        return hashlib.sha256(local).hexdigest() == sibling.lfs.sha256
    return git_blob_sha1(local) == sibling.blob_id


def _folder_files(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def _expected_splits(folder: Path) -> dict[str, dict[str, int]]:
    from ..card.render import folder_infos

    return {
        config: {split["name"]: split["num_examples"] for split in info["splits"]}
        for config, info in folder_infos(folder).items()
    }


def plan_push(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str = "main",
    private: bool | None = None,
    license: str | None = None,
    languages: list[str] | None = None,
    token: str | None = None,
    api=None,
    staging: Path | None = None,
) -> PushPlan:
    """What a push would add, update and delete. The card is re-rendered with the repo id, keeping what a
    user wrote in the repo's current card outside the generated section (written into `staging`)."""
    from ..card.render import folder_card

    folder = Path(folder)
    if not (folder / "README.md").is_file():
        raise PushError(f"{folder}: not an exported dataset folder (no README.md); run `personagym-hf export` first")
    api = api or hub_api(token)
    staging = staging or Path(tempfile.mkdtemp(prefix="personagym_push_"))

    def card(existing: str | None) -> str:
        return str(folder_card(folder, repo_id=repo_id, existing=existing, license=license, languages=languages))

    plan = plan_files(
        api,
        repo_id,
        _folder_files(folder),
        card,
        revision=revision,
        private=private,
        staging=staging,
        token=token,
        delete_prefix="data/",
    )
    plan.splits = _expected_splits(folder)
    return plan


def plan_files(
    api,
    repo_id: str,
    local: dict[str, Path],
    render_card: Callable[[str | None], str],
    *,
    revision: str,
    private: bool | None,
    staging: Path,
    token: str | None,
    delete_prefix: str | None = None,
) -> PushPlan:
    """Diff `local` ({path in repo: file}) plus a README rendered by `render_card(current remote card or
    None)` against the repo at `revision`; remote files under `delete_prefix` that `local` lacks are deleted."""
    from huggingface_hub import hf_hub_download

    exists, head, remote_private, remote = remote_state(api, repo_id, revision)
    existing = None
    if "README.md" in remote:
        path = hf_hub_download(repo_id, "README.md", repo_type=REPO_TYPE, revision=head, token=token)
        existing = Path(path).read_text(encoding="utf-8")
    from huggingface_hub import DatasetCard

    card = render_card(existing)
    (staging / "README.md").write_text(card, encoding="utf-8")
    local = {**local, "README.md": staging / "README.md"}
    plan = PushPlan(repo_id, revision, exists, head, remote_private, private, local=local)
    card_data = DatasetCard(card).data
    plan.card_license, plan.card_languages = card_data.get("license"), list(card_data.get("language") or [])
    for path, file in local.items():
        data = file.read_bytes()
        sibling = remote.get(path)
        if sibling is None:
            plan.files.append(FilePlan(path, len(data), "add"))
        elif not _same(data, sibling):
            plan.files.append(FilePlan(path, len(data), "update"))
        else:
            plan.unchanged[path] = len(data)
    for path in sorted(remote):
        if delete_prefix and path.startswith(delete_prefix) and path not in local:
            plan.files.append(FilePlan(path, remote[path].size or 0, "delete"))
    return plan


def _retryable(error: Exception) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        response = getattr(error, "response", None)
        return response is not None and response.status_code in RETRY_STATUSES
    try:
        import httpx2 as httpx
    except ImportError:  # older huggingface_hub releases use httpx
        import httpx
    return isinstance(error, (httpx.TransportError, ConnectionError, TimeoutError))


def _operations(plan: PushPlan, progress: UploadProgress | None = None) -> list:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    ops = []
    for item in plan.files:
        if item.action == "delete":
            ops.append(CommitOperationDelete(path_in_repo=item.path))
        elif progress is None:
            ops.append(CommitOperationAdd(path_in_repo=item.path, path_or_fileobj=str(plan.local[item.path])))
        else:
            file = progress.open(plan.local[item.path], item.path)
            ops.append(CommitOperationAdd(path_in_repo=item.path, path_or_fileobj=file))
            file.counting = True  # from here on, reads are the upload's (the operation has hashed the file)
    return ops


def upload_stats(planned: list[FilePlan], unchanged: dict[str, int], progress: UploadProgress) -> UploadStats:
    """What the push sent and what it found on the Hub, from the files it planned to upload."""
    stats = UploadStats(stored=set(progress.stored))
    for item in planned:
        if item.action == "delete":
            continue
        if item.path in progress.stored:
            stats.reused += item.size
            stats.reused_files += 1
        else:  # streamed to LFS storage (counted as read), or sent inline in the commit
            stats.sent += progress.sent.get(item.path) or item.size
    stats.reused += sum(unchanged.values())
    stats.reused_files += len(unchanged)
    return stats


def _commit_url(repo_id: str, sha: str) -> str:
    from huggingface_hub import constants

    return f"{constants.ENDPOINT}/datasets/{repo_id}/commit/{sha}"


def _pr_refs(api, repo_id: str) -> set[str]:
    refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE, include_pull_requests=True)
    return {ref.ref for ref in refs.pull_requests or []}


@dataclass(frozen=True)
class PushOptions:
    """What a push sends and how: the one declaration of its settings (the CLI builds it; `push_to_hub` takes it,
    or any of its fields by keyword)."""

    revision: str = "main"
    private: bool | None = None  # None: a new repo is public, an existing one keeps its visibility
    create_pr: bool = False
    commit_message: str | None = None
    token: str | None = None
    license: str | None = None
    languages: list[str] | None = None
    allow_secrets: bool = False  # push strings that look like secrets, accepted or not
    dry_run: bool = False
    verify: bool = True  # load every config back from the commit
    viewer_checks: bool = True
    show_progress: bool = False
    timeout: float = DEFAULT_TIMEOUT  # seconds without an answer before a request gives up
    max_attempts: int = DEFAULT_ATTEMPTS  # of each failed read, and of the commit
    backoff: float = 1.0  # seconds before the first retry, doubled after each


def push_to_hub(folder: str | Path, repo_id: str, options: PushOptions | None = None, **settings: Any) -> PushResult:
    """Push an exported folder (see the module docstring for the guarantees) with `options`, and any `PushOptions`
    field given by keyword over them (`push_to_hub(folder, repo, private=True, dry_run=True)`; an unknown one is a
    TypeError). Every request gives up after `timeout` seconds without an answer; failed reads and the commit are
    tried `max_attempts` times. With `show_progress`, one bar over the bytes uploaded (and the bars of `datasets`
    while it loads the data)."""
    import dataclasses

    o = dataclasses.replace(options or PushOptions(), **settings)
    revision, private, token, dry_run, show_progress = o.revision, o.private, o.token, o.dry_run, o.show_progress
    from ..card.render import check_languages, check_license
    from .safety import BASELINE_FILE, gate, kinds_of

    folder = Path(folder)
    license = check_license(o.license)  # before any request
    languages = None if o.languages is None else check_languages(o.languages)
    api = hub_api(token)
    session = connection.hub_session(o.timeout, o.max_attempts, o.backoff)
    with session, library_bars(show_progress), tempfile.TemporaryDirectory(prefix="personagym_push_") as staging:
        auth = check_auth(api, token)
        if not auth.ok and not dry_run:
            raise PushError(f"cannot push: {auth.problem}")
        # A dry run whose token the Hub refuses still shows the plan, as seen without a token.
        read_api, read_token = (hub_api(False), False) if auth.anonymous else (api, token)

        def replan() -> PushPlan:  # also used to re-read the branch before a commit is retried
            return plan_push(folder, repo_id, revision=revision, private=private, license=license,
                             languages=languages, token=read_token, api=read_api, staging=Path(staging))  # fmt: skip

        plan = replan()
        plan.auth = auth
        if not o.allow_secrets:  # every string of what would be uploaded, the card as staged included
            secrets, refused = gate(folder, plan.local)
            if refused:
                raise PushError(refused)
            if secrets.findings:
                plan.notices.append(
                    f"{plural(len(secrets.findings), 'string')} that look like secrets ({kinds_of(secrets.findings)}) "
                    f"pushed as accepted by {folder / BASELINE_FILE}"
                )
        if o.viewer_checks and plan.files:  # nothing to upload: the repo holds these files already
            plan.refusal = viewer_refusal(folder, plan)
        if dry_run:
            return PushResult(plan)
        if plan.refusal:
            raise PushError(plan.refusal)
        ensure_repo(api, plan, private)
        planned, progress = list(plan.files), UploadProgress(enabled=show_progress)
        try:
            result = commit_with_retries(
                api, plan, replan, create_pr=o.create_pr, message=o.commit_message,
                max_attempts=o.max_attempts, backoff=o.backoff, progress=progress,
            )  # fmt: skip
        finally:
            progress.close()
        result.upload = upload_stats(planned, plan.unchanged, progress)
        if o.verify and result.committed:
            result.verified = verify_push(repo_id, result.commit_sha, plan.splits, folder, token=token)
    return result


def viewer_refusal(folder: Path, plan: PushPlan) -> str | None:
    """The problems the Hub's dataset viewer would have with the staged files, as one line each (None: none)."""
    from .viewer import check_staged

    problems = check_staged(plan.local)
    if not problems:
        return None
    return (
        f"the Hub's dataset viewer would reject {folder}: {plural(len(problems), 'problem')} "
        "(fix them, or pass --skip-viewer-checks to push anyway):\n" + "\n".join(f"  {line}" for line in problems)
    )


@contextmanager
def library_bars(datasets_bars: bool) -> Iterator[None]:
    """For a push: `huggingface_hub`'s bars off (the push draws one bar over the bytes it sends instead of one per
    file), and `datasets`' bars (loading the staged files, the verify) off unless `datasets_bars`."""
    import datasets
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    hub_was_on, datasets_was_on = not are_progress_bars_disabled(), not datasets.are_progress_bars_disabled()
    disable_progress_bars()
    if not datasets_bars:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if hub_was_on:
            enable_progress_bars()
        if datasets_was_on and not datasets_bars:
            datasets.enable_progress_bars()


def ensure_repo(api, plan: PushPlan, private: bool | None) -> None:
    """Create the repo (and branch) if missing; apply `private` to an existing repo."""
    if not plan.exists:
        api.create_repo(plan.repo_id, repo_type=REPO_TYPE, private=bool(private), exist_ok=True)
        plan.exists = plan.created = True
        _exists, plan.head, _private, _remote = remote_state(api, plan.repo_id, plan.revision)
    elif private is not None and plan.private != private:
        api.update_repo_settings(plan.repo_id, repo_type=REPO_TYPE, private=private)
        # A notice, always shown by the CLI, because `private=` alone only applies when a repo is created.
        notice = (
            f"{plan.repo_id} was {'public' if private else 'private'}; made it {'private' if private else 'public'}"
        )
        logger.info(notice)
        plan.notices.append(notice)
    if plan.head is None and plan.revision != "main":
        api.create_branch(plan.repo_id, repo_type=REPO_TYPE, branch=plan.revision, exist_ok=True)
        _exists, plan.head, _private, _remote = remote_state(api, plan.repo_id, plan.revision)


def commit_with_retries(
    api,
    plan: PushPlan,
    replan: Callable[[], PushPlan],
    *,
    create_pr: bool = False,
    message: str | None = None,
    max_attempts: int = 5,
    backoff: float = 1.0,
    progress: UploadProgress | None = None,
) -> PushResult:
    """Make the plan's one commit. On a retryable failure, wait, re-plan against the branch head and try
    again; an empty re-plan means the commit whose response was lost has landed. With `progress`, the bytes
    sent are counted and drawn, and the first attempt asks which contents the Hub holds already."""
    result = PushResult(plan)
    prs_before = _pr_refs(api, plan.repo_id) if create_pr else set()
    for attempt in range(1, max_attempts + 1):
        if not plan.files:
            result.commit_sha = plan.head if result.commit_sha is None else result.commit_sha
            return result
        operations = _operations(plan, progress)
        if progress is not None and attempt == 1:
            additions = [op for op in operations if hasattr(op, "upload_info")]
            progress.stored = stored_on_hub(api, plan.repo_id, plan.revision, additions, api.token)
            progress.start(
                sum(item.size for item in plan.files if item.action != "delete" and item.path not in progress.stored)
            )
        try:
            info = api.create_commit(
                plan.repo_id,
                operations,
                repo_type=REPO_TYPE,
                revision=plan.revision,
                create_pr=create_pr,
                parent_commit=plan.head,
                commit_message=message or f"Upload dataset ({plural(len(plan.files), 'file')}) with personagym-hf",
            )
            result.commit_sha, result.commit_url, result.committed = info.oid, info.commit_url, True
            return result
        except Exception as error:  # noqa: BLE001 — only transport and retryable HTTP errors are retried
            if not _retryable(error) or attempt == max_attempts:
                raise
            logger.warning(
                "commit attempt %d failed (%s); re-reading the branch before retrying",
                attempt,
                error.__class__.__name__,
            )
            time.sleep(backoff * 2 ** (attempt - 1))
        if create_pr:
            new = _pr_refs(api, plan.repo_id) - prs_before
            if new:  # the lost response did open our pull request
                ref = sorted(new)[-1]
                result.commit_sha = api.repo_info(plan.repo_id, repo_type=REPO_TYPE, revision=ref).sha
                result.commit_url, result.committed = _commit_url(plan.repo_id, result.commit_sha), True
                return result
            continue
        fresh = replan()
        plan.head, plan.files = fresh.head, fresh.files
        if not plan.files:  # the repo already holds our data: the commit whose response was lost landed
            result.commit_sha, result.commit_url, result.committed = (
                fresh.head,
                _commit_url(plan.repo_id, fresh.head),
                True,
            )
            return result
    return result


def verify_push(
    repo_id: str, revision: str, expected: dict[str, dict[str, int]], folder: Path, token: str | None = None
) -> dict[str, dict[str, int]]:
    """Load every config and split at `revision` and check row counts and features against the folder."""
    import datasets
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard

    local = DatasetInfosDict.from_dataset_card_data(DatasetCard.load(folder / "README.md").data)
    found: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="personagym_verify_") as cache:
        for config, splits in expected.items():
            loaded = datasets.load_dataset(repo_id, config, revision=revision, cache_dir=cache, token=token)
            found[config] = {name: loaded[name].num_rows for name in loaded}
            if found[config] != splits:
                raise PushError(
                    f"verify {repo_id}@{revision[:8]} config {config}: expected rows {splits}, found {found[config]}"
                )
            for name in loaded:
                if loaded[name].features != local[config].features:
                    raise PushError(f"verify {repo_id}@{revision[:8]} config {config} split {name}: features differ")
    return found
