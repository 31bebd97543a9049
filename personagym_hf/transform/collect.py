"""Interaction dict -> TrainingSample: pure functions, no I/O.

Defaults for optional fields (documented in the README):
- `initial_query` falls back to the first user message; `original_query` to `initial_query`;
- `persona_features` to `{}`; `metadata.distractor_applied` to whether any noisy version exists;
- `metadata.assistant_model` to the first assistant message's `metadata.{model, provider}`, else null;
- a record without `interaction_id` gets an id from a hash of its content, so it is still stable.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, Callable

import orjson

from ..schema import FIELD_NAMES, TrainingSample
from ..wording import plural

ROLES = ("system", "user", "assistant")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_READABLE = 120  # characters of an id kept in its sample id: with the hash suffix, a sample id is at most 155
_PLAIN = re.compile(rf"interaction_([A-Za-z0-9._-]{{1,{_READABLE}}})")
_HASH_SUFFIX = re.compile(r"_[a-z2-7]{26}\Z")  # `_` and a 128-bit digest in base32, as `sample_id_for` appends
_HASH_SUFFIX_LENGTH = 27
_PREFIX_LENGTH = len("interaction_")
_OPTIONAL_METADATA = ("created_at", "query_id", "distractor_type")
# How deep a sample's free-form values (persona_features, metadata) may nest. Every output is JSON text written by
# orjson, which refuses more than 254 nested containers (it reads up to 1024), and a field sits two levels down in
# a JSON array item; pandas' ujson (what `datasets` decodes `Json` with) and Python's json stop near 1000. A
# record past the limit is rejected here, where it is still one record, instead of failing a writer mid-run.
MAX_DEPTH = 100
_CONTAINERS = (dict, list, tuple)


class InvalidInteraction(ValueError):
    """The record cannot become a training sample; the message says why."""


def sample_id_for(interaction_id: str) -> str:
    """A sample id that is stable, safe in file names (`[A-Za-z0-9._-]`, at most 155 characters) and different for
    every different interaction_id, so that only equal interaction_ids are duplicates.

    - A *plain* id, `interaction_<rest>` where rest is 1 to 120 safe characters and does not end like a hash
      suffix (`_` and 26 characters of `[a-z2-7]`), becomes `sample_<rest>`: every upstream id keeps the readable
      sample id it always had.
    - Every other id becomes `sample_<readable>_<hash>`: its first 120 characters (without the prefix) with `_`
      for each unsafe one, then the lowercase base32 of a 128-bit blake2b digest of the whole id.

    Why two different ids cannot get one sample id: a plain id's sample id never ends like a hash suffix and every
    other sample id does, so a plain and a hashed id never meet. Two plain ids with one sample id have one `rest`,
    so they are the same id (the prefix is fixed). Two hashed ids with one sample id have one digest of their
    whole id, which for different ids takes a blake2b collision on 128 bits: ~2^64 tries for one made on purpose,
    never by chance (the same bound `seen.py` relies on). Nothing else goes into a sample id.
    """
    plain = _PLAIN.fullmatch(interaction_id)
    if plain and not _HASH_SUFFIX.search(plain[1], len(plain[1]) - _HASH_SUFFIX_LENGTH):
        return "sample_" + plain[1]
    rest = interaction_id[_PREFIX_LENGTH:] if interaction_id.startswith("interaction_") else interaction_id
    digest = hashlib.blake2b(interaction_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    suffix = base64.b32encode(digest).decode("ascii").rstrip("=").lower()
    return f"sample_{_UNSAFE.sub('_', rest[:_READABLE])}_{suffix}"


def too_deep(value: Any, levels: int = MAX_DEPTH) -> bool:
    """Whether `value` nests more than `levels` dicts and lists (tuples too: orjson writes them as arrays).
    It never descends more than `levels + 1` calls, however deep the value is."""
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return False
    if levels <= 0:
        return True
    for child in value:  # a flat persona's values are strings: no call for them
        if isinstance(child, _CONTAINERS) and too_deep(child, levels - 1):
            return True
    return False


def nesting_issue(name: str, value: Any) -> str | None:
    """Why a sample field cannot be exported because of its depth (naming the key under which it is too deep),
    or None."""
    if not too_deep(value):
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value)
    at = next(str(key) for key, child in items if too_deep(child, MAX_DEPTH - 1))
    return f"{name} is nested deeper than {MAX_DEPTH} levels (at {at})"


def _shown(value: Any) -> str:
    """A record's value in a message: its repr, or for a container its type (a repr could be 1000 levels deep,
    where Python's repr stops)."""
    return f"a {type(value).__name__}" if isinstance(value, (dict, list)) else repr(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidInteraction(f"{where} must be a string, got {type(value).__name__}")
    return value


def _messages(interaction: dict) -> list[dict[str, str]]:
    messages = interaction.get("messages")
    if messages is None:
        raise InvalidInteraction("missing 'messages'")
    if not isinstance(messages, list):
        raise InvalidInteraction(f"'messages' must be a list, got {type(messages).__name__}")
    if not messages:
        raise InvalidInteraction("'messages' is empty")
    conversation = []
    has_user = False
    for number, message in enumerate(messages, start=1):  # hot loop: one pass, no helper calls
        if not isinstance(message, dict):
            raise InvalidInteraction(f"message {number} must be an object, got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if role == "user":
            has_user = True
        elif role == "system":
            if number != 1:
                raise InvalidInteraction(f"message {number} is a 'system' message; only the first message may be")
        elif role != "assistant":
            raise InvalidInteraction(f"message {number} has role {_shown(role)}; expected one of {list(ROLES)}")
        if not isinstance(content, str):
            raise InvalidInteraction(f"message {number} content must be a string, got {type(content).__name__}")
        if not content or content.isspace():
            raise InvalidInteraction(f"message {number} ({role}) has empty content")
        conversation.append({"role": role, "content": content})
    if not has_user:
        raise InvalidInteraction("no user message")
    return conversation


def _noise_entry(item: Any, where: str, type_key: str = "noise_type") -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidInteraction(f"{where} must be an object, got {type(item).__name__}")
    strategies = item.get("applied_strategies") or []
    if not isinstance(strategies, list) or not all(isinstance(s, str) for s in strategies):
        raise InvalidInteraction(f"{where}.applied_strategies must be a list of strings")
    noisy_text = _text(item.get("noisy_text"), f"{where}.noisy_text")
    if not noisy_text:
        raise InvalidInteraction(f"{where}.noisy_text is empty")
    return {
        "noisy_text": noisy_text,
        "noise_type": _text(item.get(type_key) or "unknown", f"{where}.{type_key}"),
        "applied_strategies": list(strategies),
    }


def _object(value: Any, where: str) -> dict:
    """An optional object: missing or empty gives {}, anything else that is not an object is an error."""
    if not value:
        return {}
    if not isinstance(value, dict):
        raise InvalidInteraction(f"{where} must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list:
    """An optional list: missing or empty gives [], anything else that is not a list is an error."""
    if not value:
        return []
    if not isinstance(value, list):
        raise InvalidInteraction(f"{where} must be a list, got {type(value).__name__}")
    return value


def noisy_initial_queries(interaction: dict) -> list[dict[str, Any]]:
    """The noisy versions of the first user turn, from either upstream layout, as `{noisy_text, noise_type,
    applied_strategies}` (layout B's `layer` becomes `noise_type`). Duplicates across layouts are dropped."""
    metadata = interaction.get("metadata") or {}
    entries: list[dict[str, Any]] = []
    direct = _list(interaction.get("noisy_initial_queries"), "noisy_initial_queries")  # already in our shape
    for index, item in enumerate(direct):
        entries.append(_noise_entry(item, f"noisy_initial_queries[{index}]"))
    where = "metadata.noisy_versions"
    layout_a = _object(metadata.get("noisy_versions"), where)
    layout_a = _object(layout_a.get("initial_query"), f"{where}.initial_query")
    layout_a = _list(layout_a.get("noisy_versions"), f"{where}.initial_query.noisy_versions")
    for index, item in enumerate(layout_a):
        entries.append(_noise_entry(item, f"{where}.initial_query.noisy_versions[{index}]"))
    layout_b = _object(metadata.get("semantic_noise"), "metadata.semantic_noise").get("initial_query")
    if layout_b:
        entries.append(_noise_entry(layout_b, "metadata.semantic_noise.initial_query", type_key="layer"))
    unique, seen = [], set()
    for entry in entries:
        key = (entry["noisy_text"], entry["noise_type"])
        if key not in seen:
            seen.add(key)
            unique.append(entry)
    return unique


def _assistant_model(interaction: dict) -> Any:
    model = (interaction.get("metadata") or {}).get("assistant_model")
    if model is not None:
        return model
    for message in interaction.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "assistant":
            meta = message.get("metadata")
            if isinstance(meta, dict) and meta.get("model"):  # only a fallback: odd message metadata is ignored
                return {"model": meta["model"], "provider": meta.get("provider")}
    return None


CHECKS_ITSELF = "checks_itself"  # the marker attribute of a conversion that makes every check as it converts


def checks_itself(convert: Callable) -> Callable:
    """Mark `convert` (a function, or a method: its bound methods read the marker) as a conversion that already
    makes every check of `validate_sample` as it converts, so that its samples are not validated twice
    (`samples.checks_itself`). Only the built-in conversion is marked; a test holds it to that."""
    setattr(convert, CHECKS_ITSELF, True)
    return convert


@checks_itself
def interaction_to_sample(interaction: dict) -> TrainingSample:
    """Convert one upstream interaction record; raises InvalidInteraction naming the reason."""
    if not isinstance(interaction, dict):
        raise InvalidInteraction(f"expected an interaction object, got {type(interaction).__name__}")
    metadata = interaction.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInteraction(f"'metadata' must be an object, got {type(metadata).__name__}")
    interaction_id = interaction.get("interaction_id")
    if interaction_id is None:
        try:
            content = orjson.dumps(interaction, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError as e:  # nested too deep for orjson, or not JSON at all (seed API dicts)
            raise InvalidInteraction(f"no interaction_id, and none can be made from the record's content ({e})")
        interaction_id = "interaction_" + hashlib.sha1(content).hexdigest()[:16]
    interaction_id = _text(interaction_id, "interaction_id")
    persona_id = interaction.get("persona_id")
    if not isinstance(persona_id, str) or not persona_id:
        raise InvalidInteraction("missing persona_id")
    persona_features = interaction.get("persona_features") or {}
    if not isinstance(persona_features, dict):
        raise InvalidInteraction(f"'persona_features' must be an object, got {type(persona_features).__name__}")

    conversation = _messages(interaction)
    trajectory = [m["content"] for m in conversation if m["role"] == "user"]
    initial_query = _text(interaction.get("initial_query") or trajectory[0], "initial_query")
    original_query = _text(interaction.get("original_query") or initial_query, "original_query")
    noisy = noisy_initial_queries(interaction)

    sample_metadata: dict[str, Any] = {
        "interaction_id": interaction_id,
        "distractor_applied": bool(metadata.get("distractor_applied", bool(noisy))),
        "assistant_model": _assistant_model(interaction),
    }
    for key in _OPTIONAL_METADATA:
        value = interaction.get(key, metadata.get(key))
        if value is not None:
            sample_metadata[key] = value
    # The only free-form values a sample takes from its record; every other field has a fixed shape.
    issue = nesting_issue("persona_features", persona_features) or nesting_issue("metadata", sample_metadata)
    if issue:
        raise InvalidInteraction(issue)

    return TrainingSample(
        sample_id=sample_id_for(interaction_id),
        persona_id=persona_id,
        persona_features=persona_features,
        original_query=original_query,
        initial_query=initial_query,
        prompt_trajectory=trajectory,
        full_conversation=conversation,
        num_turns=len(trajectory),
        noisy_initial_queries=noisy,
        metadata=sample_metadata,
    )


def record_warnings(interaction: dict, sample: TrainingSample) -> list[str]:
    """Things worth a warning that do not make the record unusable."""
    warnings = []
    declared = interaction.get("num_turns")
    if declared is not None and declared != sample.num_turns:
        warnings.append(
            f"num_turns is {_shown(declared)} in the record but the messages hold "
            f"{plural(sample.num_turns, 'user turn')}"
        )
    return warnings


def validate_sample(sample: TrainingSample) -> list[str]:
    """The seed's checks plus the shape checks every exporter relies on; an empty list means valid."""
    issues = []
    if not sample.persona_id:
        issues.append("Missing persona_id")
    if not sample.prompt_trajectory:
        issues.append("Empty prompt trajectory")
    if sample.num_turns < 1:
        issues.append("Invalid turn count")
    if not sample.sample_id:
        issues.append("Missing sample_id")
    if sample.num_turns != len(sample.prompt_trajectory) and sample.prompt_trajectory:
        issues.append(
            f"num_turns is {sample.num_turns} but prompt_trajectory has {len(sample.prompt_trajectory)} prompts"
        )
    for number, message in enumerate(sample.full_conversation, start=1):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            role = message.get("role") if isinstance(message, dict) else None
            issues.append(f"Message {number} has invalid role {_shown(role)}")
        elif not isinstance(message.get("content"), str) or not message["content"].strip():
            issues.append(f"Message {number} has empty content")
    user_turns = [
        m.get("content") for m in sample.full_conversation if isinstance(m, dict) and m.get("role") == "user"
    ]
    if sample.full_conversation and user_turns != list(sample.prompt_trajectory):
        issues.append("prompt_trajectory does not match the user turns of full_conversation")
    for index, entry in enumerate(sample.noisy_initial_queries):
        if not isinstance(entry, dict) or not entry.get("noisy_text") or not entry.get("noise_type"):
            issues.append(f"Noisy query {index} needs non-empty noisy_text and noise_type")
    for name in FIELD_NAMES:
        issue = nesting_issue(name, getattr(sample, name))
        if issue:
            issues.append(issue)
    return issues
