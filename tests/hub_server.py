"""An in-memory, Hugging Face Hub-compatible HTTP server for offline tests.

It speaks the subset of the Hub's HTTP protocol described in ``shared/HUB_API.md`` (gathered from
``huggingface_hub`` 2.4.0 and ``datasets`` 5.2.0), so tests can drive the *real* clients --
``HfApi``, ``HfFileSystem``, ``hf_hub_download``, ``DatasetCard``, ``push_to_hub`` and
``load_dataset`` -- against ``127.0.0.1`` with no mocks and no internet.

Model (stdlib only):

* ``Repo``: refs (``refs/heads/*``, ``refs/tags/*``, ``refs/pr/N``) pointing at commit ids, and
  every commit ever made (old commits stay readable by sha). A new repo holds one initial commit
  with ``.gitattributes``.
* ``Commit``: an immutable snapshot ``{path: Blob}`` with parent, title, message and a date from a
  deterministic fake clock. Ids are real git ids: blob/tree/commit sha1, sha256 for LFS contents.
* ``FaultInjector``: queued faults (status code, ``Retry-After``, dropped connection, a request that
  is never answered, or a response lost *after* the request was performed) matched by method and
  path regex.
* ``HubServer``: start/stop, ``reset()``, ``inject()`` and the counters tests assert on.

Upload mode (answer of ``preupload``): ``lfs`` when the path matches a ``filter=lfs`` pattern of
the repo's ``.gitattributes`` (``*.parquet``, ``*.bin``, ...), when the size is at least
``HubServer.lfs_threshold`` (10 MiB, like the Hub), or when the 512-byte sample holds a NUL byte;
``regular`` otherwise.

Authentication, as the Hub answers it: any ``Authorization: Bearer <token>`` is a token of ``USER``
with write access, unless the test listed it in ``HubServer.invalid_tokens`` (then every request
with it gets 401 "Invalid credentials in Authorization header") or ``HubServer.read_only_tokens``
(writes get 403). Without a token, writes get 401 and a private repo reads as missing (401 with
``X-Error-Code: RepoNotFound``, as the Hub hides it). The LFS upload PUT carries no token (its href
is its authorisation) and is not checked.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import logging
import re
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property, partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

USER = "test-user"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space", "kernels": "kernel"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/", "kernel": "kernels/"}
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lz4 *.mds *.model *.msgpack *.npy "
    "*.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors *.tar *.tflite "
    "*.tgz *.wasm *.xz *.zip *.zst *tfevents* *.jpg *.jpeg *.png *.webp *.mp3 *.wav *.flac"
).split()
DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


# --------------------------------------------------------------------------- git objects


def git_oid(kind: str, payload: bytes) -> str:
    """sha1 of a git object: ``sha1(b"<kind> <size>\\0" + payload)``."""
    return hashlib.sha1(b"%s %d\0" % (kind.encode(), len(payload)) + payload).hexdigest()


@dataclass(frozen=True)
class Blob:
    """File content; LFS blobs are stored in git as a pointer file."""

    data: bytes
    lfs: bool = False

    @property
    def size(self) -> int:
        return len(self.data)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n".encode()

    @cached_property
    def oid(self) -> str:
        """The git blob id (of the pointer file for LFS blobs)."""
        return git_oid("blob", self.pointer if self.lfs else self.data)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid


def tree_oids(files: dict[str, Blob]) -> dict[str, str]:
    """Git tree id of every directory of a snapshot ('' is the root)."""
    entries: dict[str, dict[str, tuple[bytes, str]]] = {"": {}}
    for path, blob in files.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            entries.setdefault("/".join(parts[:depth]), {})
        entries["/".join(parts[:-1])][parts[-1]] = (b"100644", blob.oid)
    oids: dict[str, str] = {}
    for directory in sorted(entries, key=lambda d: -d.count("/") - (d != "")):  # deepest first
        # git orders tree entries by name, a directory's name taken with a trailing "/"
        children = sorted(entries[directory].items(), key=lambda kv: kv[0] + "/" * (kv[1][0] == b"40000"))
        body = b"".join(mode + b" " + name.encode() + b"\0" + bytes.fromhex(oid) for name, (mode, oid) in children)
        oids[directory] = git_oid("tree", body)
        if directory:
            parent, _, name = directory.rpartition("/")
            entries[parent][name] = (b"40000", oids[directory])
    return oids


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    date: datetime
    files: dict[str, Blob]

    @classmethod
    def create(cls, files: dict[str, Blob], parent: str | None, title: str, text: str, date: datetime) -> Commit:
        message = title + (f"\n\n{text}" if text else "")
        stamp = f"{USER} <{USER}@localhost> {int(date.timestamp())} +0000"
        body = f"tree {tree_oids(files)['']}\n" + (f"parent {parent}\n" if parent else "")
        body += f"author {stamp}\ncommitter {stamp}\n\n{message}\n"
        return cls(git_oid("commit", body.encode()), parent, title, message, date, dict(files))

    @cached_property
    def trees(self) -> dict[str, str]:
        """Tree id of every directory ('' is the root)."""
        return tree_oids(self.files)

    def entry_oid(self, path: str) -> str | None:
        """Blob id of a file or tree id of a directory, None if absent."""
        if path in self.files:
            return self.files[path].oid
        return self.trees.get(path)

    def summary(self) -> dict[str, Any]:
        return {"id": self.oid, "title": self.title, "date": iso(self.date)}


def iso(date: datetime) -> str:
    return date.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse_range(header: str, size: int) -> tuple[int, int]:
    """Inclusive (start, end) of a ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` header."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if match is None or match.groups() == ("", "") or size == 0:
        raise HubError(416, "Range not satisfiable")
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last or size - 1), size - 1)
    else:
        start, end = max(size - int(last), 0), size - 1
    if start >= size or start > end:
        raise HubError(416, "Range not satisfiable")
    return start, end


# --------------------------------------------------------------------------- repositories


class HubError(Exception):
    """An HTTP error answer with the Hub's ``X-Error-Code`` convention."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    refs: dict[str, str] = field(default_factory=dict)  # full ref name -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content
    next_pr: int = 1

    @property
    def url_path(self) -> str:
        return f"{URL_PREFIXES[self.repo_type]}{self.repo_id}"

    def ref_name(self, rev: str) -> str | None:
        """Full ref name for a branch, tag or ``refs/...`` revision, None if unknown."""
        for candidate in (rev, f"refs/heads/{rev}", f"refs/tags/{rev}"):
            if candidate.startswith("refs/") and candidate in self.refs:
                return candidate
        return None

    def resolve(self, rev: str) -> Commit:
        ref = self.ref_name(rev)
        if ref is not None:
            return self.commits[self.refs[ref]]
        if rev in self.commits:
            return self.commits[rev]
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def history(self, commit: Commit) -> list[Commit]:
        chain = [commit]
        while chain[-1].parent:
            chain.append(self.commits[chain[-1].parent])
        return chain

    def last_commit(self, commit: Commit, path: str) -> Commit:
        """The most recent ancestor commit that changed ``path``."""
        oid = commit.entry_oid(path)
        while commit.parent and self.commits[commit.parent].entry_oid(path) == oid:
            commit = self.commits[commit.parent]
        return commit


class HubState:
    """All repositories plus the counters tests assert on. Guarded by ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.repos: dict[tuple[str, str], Repo] = {}
            self.clock = 0
            self.commits_created: dict[tuple[str, str], int] = {}
            self.lfs_bytes_received = 0
            self.inline_bytes_received = 0
            self.requests: list[tuple[str, str]] = []

    def now(self) -> datetime:
        self.clock += 1
        return EPOCH + timedelta(minutes=self.clock)

    def get(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def create(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        repo = Repo(repo_type, repo_id, private)
        files = {".gitattributes": Blob(DEFAULT_GITATTRIBUTES)}
        initial = Commit.create(files, None, "initial commit", "", self.now())
        repo.commits[initial.oid] = initial
        repo.refs["refs/heads/main"] = initial.oid
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def add_commit(self, repo: Repo, ref: str, files: dict[str, Blob], parent: str, title: str, text: str) -> Commit:
        commit = Commit.create(files, parent, title, text, self.now())
        repo.commits[commit.oid] = commit
        repo.refs[ref] = commit.oid
        key = (repo.repo_type, repo.repo_id)
        self.commits_created[key] = self.commits_created.get(key, 0) + 1
        return commit


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    method: str | None
    path_regex: str
    status: int = 500
    times: int = 1
    retry_after: int | None = None
    drop_connection: bool = False
    after_handling: bool = False
    hang: bool = False
    skip: int = 0  # matching requests let through before the fault fires
    hits: int = 0
    skipped: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and re.search(self.path_regex, path) is not None


class FaultInjector:
    """Queue of faults; each fires on the next ``times`` matching requests, first queued first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.hits < fault.times and fault.matches(method, path):
                    if fault.skipped < fault.skip:
                        fault.skipped += 1
                        return None
                    fault.hits += 1
                    return fault
        return None

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()


# --------------------------------------------------------------------------- HTTP layer


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    @classmethod
    def error(cls, err: HubError) -> Response:
        headers = {"X-Error-Message": err.message.encode("ascii", "replace").decode()}
        if err.code:
            headers["X-Error-Code"] = err.code
        return cls.json({"error": err.message}, err.status, headers)


@dataclass
class Request:
    method: str
    path: str  # raw (still URL-quoted) path, without query string
    query: dict[str, list[str]]
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def flag(self, name: str) -> bool:
        return self.query.get(name, ["0"])[-1].lower() in ("1", "true")


@dataclass
class Tokens:
    """Tokens a test made invalid or read-only; any other token is valid with write access."""

    invalid: set[str] = field(default_factory=set)
    read_only: set[str] = field(default_factory=set)


WRITE_ROUTES = {
    "create_repo",
    "delete_repo",
    "preupload",
    "commit",
    "lfs_batch",
    "settings",
    "create_branch",
    "create_tag",
    "delete_ref",
}
PUBLIC_ROUTES = {"lfs_put", "validate_yaml", "agent_harnesses"}

_REPO = r"(?P<ns>[^/]+)/(?P<name>[^/]+?)"
_API = rf"^/api/(?P<type>models|datasets|spaces|kernels)/{_REPO}"
_PREFIX = r"^/(?:(?P<type>datasets|spaces|kernels)/)?" + _REPO


class HubApp:
    """Maps requests to handlers; handlers return a ``Response`` or raise ``HubError``."""

    def __init__(
        self,
        state: HubState,
        base_url: Callable[[], str],
        lfs_threshold: Callable[[], int],
        tokens: Callable[[], Tokens] = lambda: Tokens(),
    ) -> None:
        self.state, self.base_url, self.lfs_threshold, self.tokens = state, base_url, lfs_threshold, tokens
        self.access = "anonymous"  # of the request being handled (handlers run under state.lock)
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = [
            ("GET", re.compile(r"^/api/whoami-v2$"), self.whoami),
            ("GET", re.compile(r"^/api/agent-harnesses$"), self.agent_harnesses),
            ("POST", re.compile(r"^/api/repos/create$"), self.create_repo),
            ("DELETE", re.compile(r"^/api/repos/delete$"), self.delete_repo),
            ("POST", re.compile(r"^/api/validate-yaml$"), self.validate_yaml),
            ("GET", re.compile(_API + r"(?:/revision/(?P<rev>[^/]+))?$"), self.repo_info),
            ("GET", re.compile(_API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$"), self.tree),
            ("POST", re.compile(_API + r"/paths-info/(?P<rev>[^/]+)$"), self.paths_info),
            ("GET", re.compile(_API + r"/refs$"), self.refs),
            ("GET", re.compile(_API + r"/commits/(?P<rev>[^/]+)$"), self.commits),
            ("POST", re.compile(_API + r"/preupload/(?P<rev>[^/]+)$"), self.preupload),
            ("POST", re.compile(_API + r"/commit/(?P<rev>[^/]+)$"), self.commit),
            ("PUT", re.compile(_API + r"/settings$"), self.settings),
            ("POST", re.compile(_API + r"/branch/(?P<rev>[^/]+)$"), self.create_branch),
            ("DELETE", re.compile(_API + r"/branch/(?P<rev>[^/]+)$"), partial(self.delete_ref, kind="heads")),
            ("POST", re.compile(_API + r"/tag/(?P<rev>[^/]+)$"), self.create_tag),
            ("DELETE", re.compile(_API + r"/tag/(?P<rev>[^/]+)$"), partial(self.delete_ref, kind="tags")),
            ("POST", re.compile(_PREFIX + r"\.git/info/lfs/objects/batch$"), self.lfs_batch),
            ("PUT", re.compile(r"^/lfs-upload/(?P<type>[a-z]+)/" + _REPO + r"/(?P<oid>[0-9a-f]{64})$"), self.lfs_put),
            ("GET", re.compile(_PREFIX + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), self.resolve),
            ("HEAD", re.compile(_PREFIX + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), self.resolve),
        ]

    def handle(self, req: Request) -> Response:
        for method, pattern, handler in self.routes:
            match = pattern.match(req.path)
            if match and method == req.method:
                args = {k: None if v is None else unquote(v) for k, v in match.groupdict().items()}
                try:
                    with self.state.lock:
                        self.access = self.authenticate(req, handler)
                        return handler(req, **args)
                except HubError as err:
                    return Response.error(err)
                except (KeyError, ValueError, TypeError) as err:  # malformed request: fail fast, no retries
                    logger.exception("hub_server: bad request %s %s", req.method, req.path)
                    return Response.error(HubError(400, f"Bad request: {err!r}"))
        logger.warning("hub_server: no route for %s %s", req.method, req.path)
        return Response.error(HubError(404, f"No route for {req.method} {req.path}"))

    # ----------------------------------------------------------------- helpers

    def authenticate(self, req: Request, handler: Callable[..., Response]) -> str:
        """ "write", "read" or "anonymous" for this request; 401/403 where the Hub refuses it."""
        name = getattr(handler, "__name__", getattr(getattr(handler, "func", None), "__name__", ""))
        if name in PUBLIC_ROUTES:
            return "write"
        header = req.headers.get("Authorization") or ""
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else None
        if token is not None and token in self.tokens().invalid:
            raise HubError(401, "Invalid credentials in Authorization header")
        access = "anonymous" if not token else "read" if token in self.tokens().read_only else "write"
        if name in WRITE_ROUTES and access != "write":
            if access == "anonymous":
                raise HubError(401, "Invalid credentials in Authorization header")
            raise HubError(403, "You don't have the rights to write to this repo: your token can only read")
        if name == "whoami" and access == "anonymous":
            raise HubError(401, "Invalid credentials in Authorization header")
        return access

    def repo(self, type: str | None, ns: str, name: str) -> Repo:
        repo = self.state.get(REPO_TYPES.get(type or "models", "model"), f"{ns}/{name}")
        if repo.private and self.access == "anonymous":  # the Hub does not tell a hidden repo from a missing one
            raise HubError(401, f"Repository not found: {repo.repo_id}", "RepoNotFound")
        return repo

    def repo_url(self, repo: Repo) -> str:
        return f"{self.base_url()}/{repo.url_path}"

    def entry(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any] | None:
        """The tree / paths-info entry of a file or directory, None if absent."""
        blob = commit.files.get(path)
        if blob is not None:
            entry: dict[str, Any] = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
        elif path in commit.trees:
            entry = {"type": "directory", "oid": commit.trees[path], "size": 0, "path": path}
        else:
            return None
        if expand:
            entry["lastCommit"] = repo.last_commit(commit, path).summary()
        return entry

    def is_lfs(self, commit: Commit, path: str, size: int, sample: bytes) -> bool:
        attributes = commit.files.get(".gitattributes", Blob(b"")).data.decode(errors="replace")
        for line in attributes.splitlines():
            pattern, _, rest = line.strip().partition(" ")
            if "filter=lfs" in rest.split():
                target = path if "/" in pattern else path.rsplit("/", 1)[-1]
                if fnmatch.fnmatchcase(target, pattern.replace("**/", "").replace("**", "*")):
                    return True
        return size >= self.lfs_threshold() or b"\0" in sample

    # ----------------------------------------------------------------- account & repos

    def whoami(self, req: Request) -> Response:
        token = {"displayName": "fake", "role": self.access}
        return Response.json(
            {
                "type": "user",
                "name": USER,
                "fullname": "Test User",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": token},
            }
        )

    def agent_harnesses(self, req: Request) -> Response:
        """The registry huggingface_hub fetches once a day to tell AI agents apart (empty: no agent)."""
        return Response.json({"standardEnvVars": [], "harnesses": {}})

    def create_repo(self, req: Request) -> Response:
        payload = req.json()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        existing = self.state.repos.get((repo_type, repo_id))
        if existing is not None:
            return Response.json({"error": "You already created this repo", "url": self.repo_url(existing)}, 409)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = self.state.create(repo_type, repo_id, private)
        return Response.json({"url": self.repo_url(repo), "name": repo_id, "id": repo_id})

    def delete_repo(self, req: Request) -> Response:
        payload = req.json()
        key = (payload.get("type") or "model", f"{payload.get('organization') or USER}/{payload['name']}")
        if self.state.repos.pop(key, None) is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return Response.json({})

    def validate_yaml(self, req: Request) -> Response:
        content: str = req.json().get("content", "")
        if content.startswith("---") and "\n---" not in content[3:]:
            error = {"message": "Unterminated YAML front matter"}
            return Response.json({"errors": [error], "warnings": []}, 400)
        return Response.json({"errors": [], "warnings": []})

    def repo_info(self, req: Request, type: str, ns: str, name: str, rev: str | None) -> Response:
        repo = self.repo(type, ns, name)
        commit = repo.resolve(rev or "main")
        blobs = req.flag("blobs")
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=blob.size, blobId=blob.oid)
                if blob.lfs:
                    sibling["lfs"] = {"size": blob.size, "sha256": blob.sha256, "pointerSize": len(blob.pointer)}
            siblings.append(sibling)
        created = repo.history(commit)[-1].date
        return Response.json(
            {
                "_id": git_oid("repo", repo.repo_id.encode())[:24],
                "id": repo.repo_id,
                "author": ns,
                "sha": commit.oid,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": iso(created),
                "lastModified": iso(commit.date),
                "siblings": siblings,
            }
        )

    def settings(self, req: Request, type: str, ns: str, name: str) -> Response:
        repo, payload = self.repo(type, ns, name), req.json()
        if "visibility" in payload:
            repo.private = payload["visibility"] == "private"
        elif "private" in payload:
            repo.private = bool(payload["private"])
        return Response.json({})

    # ----------------------------------------------------------------- reading

    def tree(self, req: Request, type: str, ns: str, name: str, rev: str, path: str | None) -> Response:
        repo = self.repo(type, ns, name)
        commit = repo.resolve(rev)
        path = (path or "").strip("/")
        if path and path not in commit.trees:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        expand, recursive = req.flag("expand"), req.flag("recursive")
        prefix = f"{path}/" if path else ""
        paths = sorted({*commit.files, *commit.trees} - {""})
        inside = [p for p in paths if p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])]
        page_size = 50 if expand else 1000
        start = int(req.query.get("cursor", ["0"])[-1])
        page = [self.entry(repo, commit, p, expand) for p in inside[start : start + page_size]]
        headers = {}
        if start + page_size < len(inside):
            query = f"recursive={recursive}&expand={expand}&cursor={start + page_size}"
            headers["Link"] = f'<{self.base_url()}{req.path}?{query}>; rel="next"'
        return Response.json(page, headers=headers)

    def paths_info(self, req: Request, type: str, ns: str, name: str, rev: str) -> Response:
        repo = self.repo(type, ns, name)
        commit = repo.resolve(rev)
        form = parse_qs(req.body.decode(), keep_blank_values=True)  # form-encoded: paths=a&paths=b&expand=
        expand = form.get("expand", ["False"])[-1].lower() in ("1", "true")
        entries = [self.entry(repo, commit, p.strip("/"), expand) for p in form.get("paths", [])]
        return Response.json([e for e in entries if e is not None])

    def refs(self, req: Request, type: str, ns: str, name: str) -> Response:
        repo = self.repo(type, ns, name)
        groups: dict[str, list[dict[str, str]]] = {"branches": [], "tags": [], "converts": [], "pullRequests": []}
        kinds = {"refs/heads/": "branches", "refs/tags/": "tags", "refs/pr/": "pullRequests"}
        for ref, oid in sorted(repo.refs.items()):
            prefix = next(p for p in kinds if ref.startswith(p))
            name = ref if prefix == "refs/pr/" else ref[len(prefix) :]
            groups[kinds[prefix]].append({"name": name, "ref": ref, "targetCommit": oid})
        if not req.flag("include_prs"):
            del groups["pullRequests"]
        return Response.json(groups)

    def commits(self, req: Request, type: str, ns: str, name: str, rev: str) -> Response:
        repo = self.repo(type, ns, name)
        return Response.json(
            [
                {**c.summary(), "message": c.message, "authors": [{"user": USER}]}
                for c in repo.history(repo.resolve(rev))
            ]
        )

    def resolve(self, req: Request, type: str | None, ns: str, name: str, rev: str, path: str) -> Response:
        repo = self.repo(type, ns, name)
        commit = repo.resolve(rev)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{blob.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.etag}"', "X-Linked-Size": str(blob.size)})
        if not req.headers.get("Range"):
            return Response(200, blob.data, headers)
        start, end = parse_range(req.headers["Range"], blob.size)
        headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
        return Response(206, blob.data[start : end + 1], headers)

    # ----------------------------------------------------------------- writing

    def preupload(self, req: Request, type: str, ns: str, name: str, rev: str) -> Response:
        commit = self.repo(type, ns, name).resolve(rev)
        answers = []
        for item in req.json()["files"]:
            sample = base64.b64decode(item.get("sample", ""))
            lfs = self.is_lfs(commit, item["path"], int(item["size"]), sample)
            existing = commit.files.get(item["path"])
            oid = None if existing is None else (existing.sha256 if existing.lfs else existing.oid)
            answers.append(
                {"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        return Response.json({"files": answers, "commitOid": commit.oid})

    def lfs_batch(self, req: Request, type: str | None, ns: str, name: str) -> Response:
        repo = self.repo(type, ns, name)
        objects = []
        for obj in req.json().get("objects", []):
            answer: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in repo.lfs_objects:
                href = f"{self.base_url()}/lfs-upload/{repo.repo_type}/{repo.repo_id}/{obj['oid']}"
                answer["actions"] = {"upload": {"href": href, "expires_in": 3600}}
            objects.append(answer)
        return Response.json(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            headers={"Content-Type": "application/vnd.git-lfs+json"},
        )

    def lfs_put(self, req: Request, type: str, ns: str, name: str, oid: str) -> Response:
        repo = self.state.get(type, f"{ns}/{name}")
        if hashlib.sha256(req.body).hexdigest() != oid:
            raise HubError(400, "sha256 of the uploaded content does not match the oid")
        repo.lfs_objects[oid] = req.body
        self.state.lfs_bytes_received += len(req.body)
        return Response(200)

    def commit(self, req: Request, type: str, ns: str, name: str, rev: str) -> Response:
        repo = self.repo(type, ns, name)
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of the commit payload must be its header")
        header, create_pr = lines[0]["value"], req.flag("create_pr")
        ref, base = self.commit_target(repo, rev, header.get("parentCommit"), create_pr)
        files = self.apply_operations(repo, dict(base.files), lines[1:])
        title, description = header.get("summary", ""), header.get("description", "")
        commit = self.state.add_commit(repo, ref, files, base.oid, title, description)
        url = self.repo_url(repo)
        answer = {"success": True, "commitOid": commit.oid, "commitUrl": f"{url}/commit/{commit.oid}"}
        if create_pr:
            repo.next_pr += 1
            answer.update(pullRequestUrl=f"{url}/discussions/{repo.next_pr - 1}", pullRequestNum=repo.next_pr - 1)
        return Response.json(answer)

    def commit_target(self, repo: Repo, rev: str, parent_oid: str | None, create_pr: bool) -> tuple[str, Commit]:
        """The ref a commit moves and the commit it builds on; 412 on a stale ``parentCommit``."""
        if create_pr:  # a new refs/pr/N, from parentCommit if given
            base = repo.commits.get(parent_oid) if parent_oid else repo.resolve(rev)
            if base is None:
                raise HubError(404, f"Invalid parent commit {parent_oid}", "RevisionNotFound")
            return f"refs/pr/{repo.next_pr}", base
        ref = repo.ref_name(rev)
        if ref is None or ref.startswith("refs/tags/"):
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        base = repo.commits[repo.refs[ref]]
        if parent_oid and parent_oid != base.oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        return ref, base

    def apply_operations(self, repo: Repo, files: dict[str, Blob], operations: list[dict]) -> dict[str, Blob]:
        for op in operations:
            key, value = op["key"], op["value"]
            path = value["path"]
            if key == "file":
                content = value["content"]
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                self.state.inline_bytes_received += len(data)
                files[path] = Blob(data)
            elif key == "lfsFile":
                if value["oid"] not in repo.lfs_objects:
                    raise HubError(422, f"LFS object {value['oid']} of {path} was never uploaded")
                files[path] = Blob(repo.lfs_objects[value["oid"]], lfs=True)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                doomed = [p for p in files if p.startswith(path.rstrip("/") + "/")]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        return files

    def create_branch(self, req: Request, type: str, ns: str, name: str, rev: str) -> Response:
        repo = self.repo(type, ns, name)
        if f"refs/heads/{rev}" in repo.refs:
            raise HubError(409, f"Branch {rev} already exists")
        start = repo.resolve(req.json().get("startingPoint") or "main")
        repo.refs[f"refs/heads/{rev}"] = start.oid
        return Response.json({})

    def create_tag(self, req: Request, type: str, ns: str, name: str, rev: str) -> Response:
        repo, tag = self.repo(type, ns, name), req.json()["tag"]
        if f"refs/tags/{tag}" in repo.refs:
            raise HubError(409, f"Tag {tag} already exists")
        repo.refs[f"refs/tags/{tag}"] = repo.resolve(rev).oid
        return Response.json({})

    def delete_ref(self, req: Request, type: str, ns: str, name: str, rev: str, kind: str) -> Response:
        repo = self.repo(type, ns, name)
        if repo.refs.pop(f"refs/{kind}/{rev}", None) is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return Response.json({})


HANG_LIMIT = 120.0  # seconds a hung request is held at most, so a server thread never outlives a broken test
FAULT_MESSAGES = {
    409: "Cannot commit: another conflicting operation is in progress",
    412: "A commit has happened since. Please refresh and try again.",
}


class HubRequestHandler(BaseHTTPRequestHandler):
    """Reads a request, applies faults, dispatches to ``HubApp`` and writes the response."""

    protocol_version = "HTTP/1.1"
    server: _HubHTTPServer

    def do_request(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        req = Request(self.command, url.path, query, self.headers, self.read_body())
        hub = self.server.hub
        with hub.state.lock:
            hub.state.requests.append((req.method, req.path))
        fault = hub.faults.take(req.method, req.path)
        if fault is not None and not fault.after_handling:
            return self.send_fault(fault)
        response = hub.app.handle(req)
        if fault is not None:
            return self.send_fault(fault)
        self.send(response, include_body=req.method != "HEAD")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_request

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send(self, response: Response, include_body: bool = True) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if include_body:
            self.wfile.write(response.body)

    def send_fault(self, fault: Fault) -> None:
        if fault.hang:  # keep the connection open and say nothing, until the client gives up or the test ends
            self.server.hub.release.wait(HANG_LIMIT)
            self.close_connection = True
            return
        if fault.drop_connection:
            self.close_connection = True
            return
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        message = FAULT_MESSAGES.get(fault.status, f"Injected fault {fault.status}")
        self.send(Response.json({"error": message}, fault.status, headers))

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("hub_server: " + format, *args)


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    hub: HubServer


class HubServer:
    """A Hub-compatible server on 127.0.0.1, running in a daemon thread.

    ``HubServer(port=0).start()`` picks a free port; ``url`` is the value for ``HF_ENDPOINT``.
    """

    lfs_threshold: int = 10 * 1024 * 1024

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.state = HubState()
        self.faults = FaultInjector()
        self.release = threading.Event()  # set to let go of every hung request
        self.tokens = Tokens()
        self.app = HubApp(self.state, lambda: self.url, lambda: self.lfs_threshold, lambda: self.tokens)
        self._httpd = _HubHTTPServer((host, port), HubRequestHandler)
        self._httpd.hub = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def release_hung(self) -> None:
        """Let go of every request held by a ``hang`` fault (their connections are closed unanswered)."""
        self.release.set()
        self.release = threading.Event()

    def reset(self) -> None:
        """Forget all repos, counters, recorded requests, pending faults and token settings."""
        self.state.reset()
        self.faults.clear()
        self.release.set()
        self.release = threading.Event()
        self.lfs_threshold = type(self).lfs_threshold
        self.tokens = Tokens()

    def inject(
        self,
        method: str | None = None,
        path_regex: str = ".*",
        status: int = 500,
        times: int = 1,
        retry_after: int | None = None,
        drop_connection: bool = False,
        after_handling: bool = False,
        hang: bool = False,
        skip: int = 0,
    ) -> Fault:
        """Make the next ``times`` requests matching ``method`` and ``path_regex`` fail.

        ``path_regex`` is searched in the raw (URL-quoted) path, without query string. The failure is
        ``status`` (with ``Retry-After`` if given) or, with ``drop_connection``, a connection closed
        without any answer, or, with ``hang``, no answer at all on an open connection (until the client
        gives up, ``reset()`` or ``HANG_LIMIT``). With ``after_handling`` the request is performed first
        (e.g. the commit is made) and only its response is lost. With ``skip``, that many matching
        requests are let through first. Returns the ``Fault``; ``fault.hits`` counts firings.
        """
        fault = Fault(method, path_regex, status, times, retry_after, drop_connection, after_handling, hang, skip)
        return self.faults.add(fault)

    # ----------------------------------------------------------------- inspection

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every request received, as (method, raw path without query)."""
        with self.state.lock:
            return list(self.state.requests)

    def count_requests(self, method: str | None = None, path_regex: str = ".*") -> int:
        return sum(1 for m, p in self.requests if (method is None or m == method) and re.search(path_regex, p))

    @property
    def lfs_bytes_received(self) -> int:
        return self.state.lfs_bytes_received

    @property
    def inline_bytes_received(self) -> int:
        return self.state.inline_bytes_received

    def commit_count(self, repo_id: str, repo_type: str = "dataset") -> int:
        """Commits created through the commit endpoint (the initial commit is not counted)."""
        with self.state.lock:
            return self.state.commits_created.get((repo_type, repo_id), 0)

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        with self.state.lock:
            return self.state.get(repo_type, repo_id)

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> str:
        with self.state.lock:
            return self.state.get(repo_type, repo_id).resolve(revision).oid

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        """Snapshot of a revision as {path: content}."""
        with self.state.lock:
            commit = self.state.get(repo_type, repo_id).resolve(revision)
            return {path: blob.data for path, blob in commit.files.items()}


class SilentServer:
    """A socket on 127.0.0.1 that accepts connections, reads what arrives and never answers.

    ``request_lines`` holds the first line of every request received; ``close()`` drops every connection.
    """

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._connections: list[socket.socket] = []
        self._stop = threading.Event()
        self.request_lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _address = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._connections.append(connection)
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        connection.settimeout(HANG_LIMIT)
        try:
            first = connection.recv(65536).split(b"\r\n", 1)[0].decode("latin-1")
        except OSError:
            return
        if first:
            with self._lock:
                self.request_lines.append(first)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for connection in self._connections:
                connection.close()
        self._thread.join(timeout=5)
