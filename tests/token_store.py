"""The hand-made token store: four interactions whose token counts are known (`TOKEN_STORE`, one interaction each
by `token_interaction`), and the budgets of its prompt-completion configs counted by hand (`LAST_TURN`, `REWRITE`,
under the prompts of `BRIEF`). The token tests, the export's and the card's read them from here."""

from conftest import make_interaction

from personagym_hf.config import Prompts
from personagym_hf.transform.views import ChatViews

# persona, original_query, messages (role, content); k1 also has a noisy version of its first query
TOKEN_STORE = {
    "k1": ("help me", [("user", "hey can u help"), ("assistant", "Sure, here it is")]),
    "k2": ("help me", [("system", "be brief"), ("user", "help"), ("assistant", "ok")]),
    "k3": ("help me", [("user", "hey can u help me with this long question please")]),
    "k4": ("help", [("user", "a b c d e f g h i j k"), ("assistant", "ok")]),
}


def token_interaction(key: str) -> dict:
    original, messages = TOKEN_STORE[key]
    messages = [{"role": role, "content": content} for role, content in messages]
    first = next(m["content"] for m in messages if m["role"] == "user")
    record = make_interaction(0, original_query=original, initial_query=first, messages=messages)
    record["interaction_id"] = f"interaction_{key}"
    record.pop("num_turns")
    if key == "k1":
        noisy = {"noisy_text": "hey cn u help", "noise_type": "surface_noise", "applied_strategies": ["typo"]}
        record["metadata"]["noisy_versions"] = {"initial_query": {"noisy_versions": [noisy]}}
    return record


# The prompt-completion configs of TOKEN_STORE with max_length 10, under GENERATION_TEMPLATE (which has no generation
# prompt, so a completion starts at its `<|assistant|>`) and a one-line instruction without the persona (`BRIEF`):
# last_turn k1 "<|user|> hey can u help" (5) + "<|assistant|> Sure , here it is </s>" (7): 12, over 10, kept
#           k2 "<|system|> be brief <|user|> help" (5) + "<|assistant|> ok </s>" (3): 8
#           k3 ends with a user turn: not in last_turn
#           k4 "<|user|> a b c d e f g h i j k" (12) + 3: 15, its completion past the 10th token: TRL drops it
# rewrite   "<|system|> be brief <|user|> " (4) + the query, then "<|assistant|> <original_query> </s>":
#           k1 styled 4 + 4 + 4 = 12, k1 noisy "hey cn u help" 12, k2 4 + 1 + 4 = 9, k3 4 + 10 + 4 = 18 (its
#           completion after the 14th token: past), k4 4 + 11 + 3 = 18 (after the 15th: past)
BRIEF = ChatViews(Prompts(rewrite_instruction="be brief", persona="none"))
LAST_TURN = {
    "rows": 3,
    "rendered": 3,
    "rejected": 0,
    "rejected_examples": [],
    "tokens": {"min": 8, "p50": 12, "p95": 15, "max": 15, "mean": 11.67, "total": 35},
    "completion_tokens": {"min": 3, "p50": 3, "p95": 7, "max": 7, "mean": 4.33, "total": 13},
    "over_max_length": 2,
    "completion_past_max_length": 1,
    "completion_past_examples": ["sample_k4"],
}
REWRITE = {
    "rows": 5,
    "rendered": 5,
    "rejected": 0,
    "rejected_examples": [],
    "tokens": {"min": 9, "p50": 12, "p95": 18, "max": 18, "mean": 13.8, "total": 69},
    "completion_tokens": {"min": 3, "p50": 4, "p95": 4, "max": 4, "mean": 3.8, "total": 19},
    "over_max_length": 4,
    "completion_past_max_length": 2,
    "completion_past_examples": ["sample_k3/styled", "sample_k4/styled"],
}
