"""The local Hub server works with the real `huggingface_hub` and `datasets` clients."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import httpx2
import pytest
from datasets import Dataset, DatasetDict, load_dataset
from hub_server import HubServer, git_oid
from huggingface_hub import (
    CommitInfo,
    CommitOperationAdd,
    DatasetCard,
    HfApi,
    HfFileSystem,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
)
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

REPO = "ns/repo"
TEN_MIB = 10 * 1024 * 1024


@pytest.fixture
def api() -> HfApi:
    return HfApi()


@pytest.fixture
def repo(hub: HubServer, api: HfApi) -> str:
    api.create_repo(REPO, repo_type="dataset")
    return REPO


def upload(api: HfApi, data: bytes, path: str, **kwargs: object) -> CommitInfo:
    return api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=REPO, repo_type="dataset", **kwargs)


def download(tmp_path: Path, path: str, revision: str | None = None) -> bytes:
    local = hf_hub_download(REPO, path, repo_type="dataset", revision=revision, cache_dir=tmp_path / "hub")
    return Path(local).read_bytes()


def tiny_dataset_dict() -> DatasetDict:
    return DatasetDict(
        train=Dataset.from_dict({"id": [1, 2, 3], "text": ["a", "b", "c"]}),
        test=Dataset.from_dict({"id": [4], "text": ["d"]}),
    )


# --------------------------------------------------------------------------- repos


def test_create_repo_exist_ok_and_initial_commit(hub: HubServer, api: HfApi) -> None:
    url = api.create_repo(REPO, repo_type="dataset")
    assert url == f"{hub.url}/datasets/{REPO}"
    assert (url.repo_id, url.repo_type) == (REPO, "dataset")
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(REPO, repo_type="dataset")
    assert exc.value.response.status_code == 409
    assert api.create_repo(REPO, repo_type="dataset", exist_ok=True) == url

    info = api.repo_info(REPO, repo_type="dataset")
    assert re.fullmatch(r"[0-9a-f]{40}", info.sha)
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]
    assert [c.title for c in api.list_repo_commits(REPO, repo_type="dataset")] == ["initial commit"]
    assert hub.commit_count(REPO) == 0


def test_update_repo_settings_private_flag(repo: str, api: HfApi) -> None:
    assert api.repo_info(repo, repo_type="dataset").private is False
    api.update_repo_settings(repo, repo_type="dataset", private=True)
    assert api.repo_info(repo, repo_type="dataset").private is True
    api.update_repo_settings(repo, repo_type="dataset", private=False)
    assert api.repo_info(repo, repo_type="dataset").private is False


# --------------------------------------------------------------------------- files


def test_regular_upload_round_trip(hub: HubServer, repo: str, api: HfApi, tmp_path: Path) -> None:
    info = upload(api, b"hello world", "notes/hello.txt")
    assert info.oid == hub.head(repo)
    assert (hub.inline_bytes_received, hub.lfs_bytes_received, hub.commit_count(repo)) == (11, 0, 1)
    assert download(tmp_path, "notes/hello.txt") == b"hello world"

    meta = get_hf_file_metadata(hf_hub_url(repo, "notes/hello.txt", repo_type="dataset"))
    assert meta.etag == git_oid("blob", b"hello world")
    assert (meta.commit_hash, meta.size) == (info.oid, 11)


def test_lfs_upload_forced_by_gitattributes(hub: HubServer, repo: str, api: HfApi, tmp_path: Path) -> None:
    data = b"tiny but *.bin"
    upload(api, data, "weights.bin")
    assert (hub.inline_bytes_received, hub.lfs_bytes_received) == (0, len(data))
    assert hub.count_requests("PUT", r"^/lfs-upload/") == 1
    assert download(tmp_path, "weights.bin") == data
    [entry] = api.get_paths_info(repo, ["weights.bin"], repo_type="dataset")
    assert entry.lfs.sha256 == hashlib.sha256(data).hexdigest()
    assert entry.lfs.size == len(data)


def test_lfs_upload_chosen_by_size(hub: HubServer, repo: str, api: HfApi, tmp_path: Path) -> None:
    data = b"a" * (TEN_MIB + 1)
    upload(api, data, "big.txt")
    assert (hub.inline_bytes_received, hub.lfs_bytes_received) == (0, len(data))
    meta = get_hf_file_metadata(hf_hub_url(repo, "big.txt", repo_type="dataset"))
    assert (meta.etag, meta.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert download(tmp_path, "big.txt") == data

    upload(api, data, "big.txt")  # unchanged: preupload returns the remote oid, the client skips it
    assert (hub.lfs_bytes_received, hub.commit_count(repo)) == (len(data), 1)


def test_tree_paths_info_and_filesystem(repo: str, api: HfApi, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "a.txt").write_text("A")
    (folder / "sub" / "b.txt").write_text("B")
    (folder / "sub" / "deeper" / "c.bin").write_bytes(b"C")
    api.upload_folder(folder_path=folder, repo_id=repo, repo_type="dataset")

    def tree(**kwargs: object) -> list[tuple[str, str]]:
        entries = api.list_repo_tree(repo, repo_type="dataset", **kwargs)
        return sorted((e.path, type(e).__name__) for e in entries)

    assert tree() == [(".gitattributes", "RepoFile"), ("a.txt", "RepoFile"), ("sub", "RepoFolder")]
    assert tree(path_in_repo="sub") == [("sub/b.txt", "RepoFile"), ("sub/deeper", "RepoFolder")]
    assert [p for p, _ in tree(recursive=True)] == [
        ".gitattributes",
        "a.txt",
        "sub",
        "sub/b.txt",
        "sub/deeper",
        "sub/deeper/c.bin",
    ]
    with pytest.raises(EntryNotFoundError):
        tree(path_in_repo="missing")
    upload(api, b"A2", "a.txt", commit_message="touch a")
    infos = api.get_paths_info(repo, ["a.txt", "missing", "sub"], repo_type="dataset", expand=True)
    assert [(i.path, i.last_commit.title) for i in infos] == [
        ("a.txt", "touch a"),
        ("sub", "Upload folder using huggingface_hub"),
    ]

    fs = HfFileSystem(skip_instance_cache=True)
    assert sorted(fs.glob(f"datasets/{repo}/sub/**/*.bin")) == [f"datasets/{repo}/sub/deeper/c.bin"]
    assert fs.cat(f"datasets/{repo}/sub/b.txt") == b"B"
    assert fs.info(f"datasets/{repo}/sub")["type"] == "directory"


def test_revisions_branches_and_old_commits(hub: HubServer, repo: str, api: HfApi, tmp_path: Path) -> None:
    first = upload(api, b"v1", "file.txt").oid
    upload(api, b"v2", "file.txt")
    assert download(tmp_path, "file.txt") == b"v2"
    assert download(tmp_path, "file.txt", revision=first) == b"v1"

    api.create_branch(repo, branch="dev", repo_type="dataset")
    dev = upload(api, b"dev", "file.txt", revision="dev").oid
    assert download(tmp_path, "file.txt", revision="dev") == b"dev"
    refs = api.list_repo_refs(repo, repo_type="dataset")
    assert sorted((b.name, b.target_commit) for b in refs.branches) == sorted([("dev", dev), ("main", hub.head(repo))])
    titles = [c.title for c in api.list_repo_commits(repo, repo_type="dataset", revision=first)]
    assert titles == ["Upload file.txt with huggingface_hub", "initial commit"]


def test_create_pr(hub: HubServer, repo: str, api: HfApi, tmp_path: Path) -> None:
    main_before = hub.head(repo)
    info = upload(api, b"proposal", "pr.txt", create_pr=True)
    assert info.pr_url == f"{hub.url}/datasets/{repo}/discussions/1"
    assert info.pr_num == 1
    assert hub.head(repo) == main_before
    refs = api.list_repo_refs(repo, repo_type="dataset", include_pull_requests=True)
    assert [(r.ref, r.target_commit) for r in refs.pull_requests] == [("refs/pr/1", info.oid)]
    assert download(tmp_path, "pr.txt", revision="refs/pr/1") == b"proposal"

    follow_up = upload(api, b"proposal v2", "pr.txt", revision="refs/pr/1")
    assert hub.head(repo, "refs/pr/1") == follow_up.oid
    assert hub.repo(repo).commits[follow_up.oid].parent == info.oid


def test_dataset_card_push_load_and_yaml_validation(repo: str, api: HfApi) -> None:
    card = DatasetCard("---\nlicense: mit\n---\n# Tiny\n")
    card.push_to_hub(repo)
    loaded = DatasetCard.load(repo)
    assert loaded.data.license == "mit"
    assert loaded.text == "# Tiny\n"
    with pytest.raises(ValueError, match="Invalid metadata"):
        upload(api, b"---\nlicense: mit\n", "README.md")


# --------------------------------------------------------------------------- datasets


def test_push_to_hub_load_dataset_and_identical_repush(hub: HubServer, tmp_path: Path) -> None:
    tiny_dataset_dict().push_to_hub(REPO)
    files = hub.files(REPO)
    assert sorted(files) == [
        ".gitattributes",
        "README.md",
        "data/test-00000-of-00001.parquet",
        "data/train-00000-of-00001.parquet",
    ]
    parquet_bytes = sum(len(v) for k, v in files.items() if k.endswith(".parquet"))
    assert (hub.commit_count(REPO), hub.lfs_bytes_received) == (1, parquet_bytes)
    assert hub.inline_bytes_received == len(files["README.md"])

    loaded = load_dataset(REPO, cache_dir=str(tmp_path))
    assert loaded["train"].to_list() == [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}, {"id": 3, "text": "c"}]
    assert loaded["test"].to_list() == [{"id": 4, "text": "d"}]

    head = hub.head(REPO)
    tiny_dataset_dict().push_to_hub(REPO)
    assert (hub.commit_count(REPO), hub.head(REPO), hub.lfs_bytes_received) == (1, head, parquet_bytes)


def test_second_config_and_streaming(hub: HubServer, tmp_path: Path) -> None:
    tiny_dataset_dict().push_to_hub(REPO)
    DatasetDict(train=Dataset.from_dict({"score": [0.5, 1.5]})).push_to_hub(REPO, config_name="other")
    assert hub.commit_count(REPO) == 2
    assert "other/train-00000-of-00001.parquet" in hub.files(REPO)

    other = load_dataset(REPO, "other", cache_dir=str(tmp_path))
    assert other["train"].to_list() == [{"score": 0.5}, {"score": 1.5}]
    default = load_dataset(REPO, cache_dir=str(tmp_path))
    assert default["test"].to_list() == [{"id": 4, "text": "d"}]

    streamed = load_dataset(REPO, streaming=True, cache_dir=str(tmp_path))
    assert list(streamed["train"]) == [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}, {"id": 3, "text": "c"}]


# --------------------------------------------------------------------------- faults


def test_preupload_500_and_429_with_retry_after_are_retried(hub: HubServer, repo: str, api: HfApi) -> None:
    server_error = hub.inject("POST", r"/preupload/", status=500)
    rate_limit = hub.inject("POST", r"/preupload/", status=429, retry_after=1)
    started = time.monotonic()
    upload(api, b"eventually", "retried.txt")
    # the client waits 1 s after the 500, then Retry-After + 1 s after the 429
    assert time.monotonic() - started >= 3.0
    assert (server_error.hits, rate_limit.hits) == (1, 1)
    assert hub.count_requests("POST", r"/preupload/") == 3
    assert hub.files(repo)["retried.txt"] == b"eventually"


def test_lfs_batch_500_and_dropped_put_are_retried(hub: HubServer, repo: str, api: HfApi) -> None:
    hub.inject("POST", r"/info/lfs/objects/batch$", status=500)
    hub.inject("PUT", r"^/lfs-upload/", drop_connection=True)
    upload(api, b"large-ish", "model.bin")
    assert hub.count_requests("POST", r"/info/lfs/objects/batch$") == 2
    assert hub.count_requests("PUT", r"^/lfs-upload/") == 2
    assert (hub.lfs_bytes_received, hub.commit_count(repo)) == (len(b"large-ish"), 1)


def test_commit_500_is_returned_not_retried(hub: HubServer, repo: str, api: HfApi) -> None:
    head = hub.head(repo)
    hub.inject("POST", r"/commit/", status=500)
    with pytest.raises(HfHubHTTPError) as exc:
        upload(api, b"x", "x.txt")
    assert exc.value.response.status_code == 500
    assert (hub.count_requests("POST", r"/commit/"), hub.commit_count(repo), hub.head(repo)) == (1, 0, head)


@pytest.mark.parametrize("drop", [False, True])
def test_lost_commit_response_still_commits(hub: HubServer, repo: str, api: HfApi, drop: bool) -> None:
    hub.inject("POST", r"/commit/", status=500, drop_connection=drop, after_handling=True)
    with pytest.raises(httpx2.RemoteProtocolError if drop else HfHubHTTPError):
        upload(api, b"x", "x.txt")
    assert hub.commit_count(repo) == 1
    assert hub.files(repo)["x.txt"] == b"x"


def test_conflicts_answer_412(hub: HubServer, repo: str, api: HfApi) -> None:
    stale = hub.head(repo)
    upload(api, b"1", "one.txt")
    add = CommitOperationAdd(path_in_repo="two.txt", path_or_fileobj=b"2")
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(repo, [add], commit_message="late", repo_type="dataset", parent_commit=stale)
    assert exc.value.response.status_code == 412

    hub.inject("POST", r"/commit/", status=412)
    with pytest.raises(HfHubHTTPError) as exc:  # datasets 5.2.0 does not retry it (see HUB_API.md)
        tiny_dataset_dict().push_to_hub(repo)
    assert exc.value.response.status_code == 412
    assert hub.commit_count(repo) == 1


# --------------------------------------------------------------------------- authentication


def test_private_repos_are_hidden_without_a_token_and_writes_need_one(
    hub: HubServer, repo: str, api: HfApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub.errors import RepositoryNotFoundError

    owner = HfApi(token="hf_owner")
    owner.update_repo_settings(repo, repo_type="dataset", private=True)
    monkeypatch.delenv("HF_TOKEN")
    anonymous = HfApi()
    with pytest.raises(RepositoryNotFoundError) as hidden:
        anonymous.repo_info(repo, repo_type="dataset")
    assert hidden.value.response.status_code == 401
    assert owner.repo_info(repo, repo_type="dataset").private is True
    owner.update_repo_settings(repo, repo_type="dataset", private=False)
    assert anonymous.repo_info(repo, repo_type="dataset").private is False
    with pytest.raises(HfHubHTTPError) as refused:
        anonymous.create_repo("ns/other", repo_type="dataset")
    assert refused.value.response.status_code == 401


def test_invalid_and_read_only_tokens(hub: HubServer, repo: str) -> None:
    hub.tokens.invalid.add("hf_revoked")
    hub.tokens.read_only.add("hf_reader")
    with pytest.raises(HfHubHTTPError, match="Invalid user token") as invalid:
        HfApi(token="hf_revoked").whoami()
    assert invalid.value.response.status_code == 401
    reader = HfApi(token="hf_reader")
    assert reader.whoami()["auth"]["accessToken"]["role"] == "read"
    assert reader.repo_info(repo, repo_type="dataset").id == repo
    with pytest.raises(HfHubHTTPError) as forbidden:
        reader.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo, repo_type="dataset")
    assert forbidden.value.response.status_code == 403
    assert HfApi(token="hf_writer").whoami()["auth"]["accessToken"]["role"] == "write"
