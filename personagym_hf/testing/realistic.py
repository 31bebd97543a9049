"""Interaction stores in the shape of a real PersonaGym store, for the benchmark and the tests.

`synth.py` writes a store whose texts repeat (a few templates and sentences): right for testing conversions, wrong
for measuring anything whose cost depends on the texts. A real store (`INTERACTIONS.md`, "the shape of a real
store") has:
- a pool of `queries` base queries, `queries_per_persona` of them given to each persona, so every
  `original_query` reaches about `personas * queries_per_persona / queries` personas; half of the time
  (`TRANSFER_PROBABILITY`) the persona's style rewrites it (casual, formal, terse, verbose, with word edits), so the
  `initial_query`s of one base query are near duplicates of each other, the other half it is sent as it is (and
  then `original_query` is sometimes missing, as upstream leaves it);
- dialogues that are all distinct: assistant turns with heavy-tailed lengths (lognormal, a Pareto tail: tens of
  bytes to tens of KB) of Markdown paragraphs, lists, headings and fenced code blocks; short user follow-ups, a few
  of them long pastes;
- words drawn from a vocabulary of real size with Zipf frequencies (`VOCABULARY` English word forms, built from
  syllables, the commonest being real function words), and `LANGUAGE_SHARES` of the personas writing German,
  Spanish, Russian, Chinese or Japanese;
- noise on `NOISE_SHARE` of the interactions, in both upstream metadata layouts (noisy versions lists and the
  semantic three-layer result), model locking from a weighted pool, persona features sampled per persona.

Everything is drawn from `seed`: the same arguments give the same bytes. No network, no model: the text is
synthetic, only its statistics are realistic (what costs depend on: lengths, distinctness, scripts, repetition).
A store of 100,000 interactions takes about half a minute to write (see the performance page of the docs).
"""

from __future__ import annotations

import os
import random
from bisect import bisect_left
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson

from .synth import UPSTREAM_MODULES, index_entry, token_usage_export

VOCABULARY = 50_000  # English word forms; other languages have 20,000
TRANSFER_PROBABILITY = 0.5  # upstream's `transfer_probability`: a query is styled for its persona this often
NOISE_SHARE = 0.3  # interactions with a distractor applied
LANGUAGE_SHARES = {"de": 0.03, "es": 0.03, "ru": 0.02, "zh": 0.02, "ja": 0.02}  # of personas; the rest write English
TURNS = (0.25, 0.30, 0.25, 0.12, 0.08)  # share of interactions with 1, 2, ... 5 user turns
MODELS = (("gpt-4o-mini", "openai", 0.5), ("claude-3-haiku", "anthropic", 0.25), ("llama-3-8b", "together", 0.15))
MODELS += (("qwen2.5-7b", "together", 0.1),)
REPLY_MEDIAN_CHARS = 900  # assistant turns: lognormal around this (sigma 1), a Pareto tail, a few one-liners
FOLLOWUP_MEDIAN_CHARS = 60

_FUNCTION_WORDS = {
    "en": "the of and to a in is you that it for on with as this be are or by can your if we an will use not but "
    "from at which more so all one also has have it's each when there their what how do any some then make sure "
    "into only other than these about may should would like just need here way file data value function first "
    "new time used using set list example code step case number since both error return",
    "de": "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an werden aus er "
    "hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur oder aber vor zur "
    "bis mehr durch man kann",
    "es": "de la que el en y a los se del las un por con no una su para es al lo como más o pero sus le ha me si sin "
    "sobre este ya entre cuando todo esta ser son dos también fue había era muy años hasta desde está mi porque "
    "qué sólo han yo hay",
    "ru": "и в не на я что он с как а то все она так его но да ты к у же вы за бы по только ее мне было вот от меня "
    "еще нет о из ему теперь когда даже ну вдруг ли если уже или ни быть был него до вас нибудь опять уж вам ведь "
    "там потом себя ничего",
}
_SYLLABLES = {
    "en": (
        "b c d f g h j k l m n p r s t v w y z bl br ch cl cr dr fl fr gr pl pr sh sl sp st str th tr wh".split()
        + [""],
        "a e i o u ai ea ee ie oo ou y".split(),
        "b ck d ft g l ll m n nd ng nt p r rd rk s ss st t th x".split() + ["", "", ""],
        ["", "", "", "s", "ed", "ing", "er", "ly", "tion", "ment", "able"],
    ),
    "de": (
        "b d f g h k l m n p r s t w z sch st sp br fr gr kr tr pf".split() + [""],
        "a e i o u ä ö ü ei ie au eu".split(),
        "b ch d f g k l m n ng r s ß t tz ck".split() + ["", ""],
        ["", "", "en", "ung", "keit", "lich", "er", "isch", "heit"],
    ),
    "es": (
        "b c d f g j l ll m n ñ p r rr s t v z ch br cr pr tr".split() + [""],
        "a e i o u á é í ó ú ia ue io".split(),
        "l n r s z d".split() + ["", "", "", ""],
        ["", "", "ción", "mente", "ado", "ar", "os", "as", "idad"],
    ),
    "ru": (
        "б в г д ж з к л м н п р с т ф х ц ч ш щ ст пр кр".split() + [""],
        "а е и о у ы э ю я ё".split(),
        ["", "", "", "й", "н", "т", "с", "ль", "р", "к"],
        ["", "", "ость", "ение", "ный", "ать", "ить", "ого", "ами"],
    ),
}
_KANA = [chr(c) for c in range(0x3041, 0x3094)]
_KATAKANA = [chr(c) for c in range(0x30A1, 0x30F4)]
_SPACED = ("en", "de", "es", "ru")
_CODE_LINES = (
    "def {a}({b}, {c}):",
    "    {a} = {b}.{c}({d})",
    "    if {a} is None:",
    "        return {b}",
    "    for {a} in range(len({b})):",
    "        {a}[{b}] += {c} * {n}",
    "    return {a}",
    "import {a}",
    "from {a} import {b}",
    "{a} = [{b} for {c} in {d} if {c}]",
    "class {A}:",
    "    def __init__(self, {a}):",
    "        self.{a} = {a}",
    'print(f"{a}: {{{b}}}")',
    "const {a} = await {b}.{c}({d});",
    "SELECT {a}, {b} FROM {c} WHERE {d} > {n};",
    "$ {a} --{b} {c}/{d}.txt",
    "# {a} the {b} before {c}",
    '{a}_{b} = {{"{c}": {n}, "{d}": {a}}}',
    '    raise ValueError(f"{a} {b}: {{{c}!r}}")',
)
_CODE_LANGUAGES = ("python", "python", "python", "javascript", "bash", "sql", "")
_REQUESTS = (
    "Help me {v} a {n} that {v2} the {n2}",
    "Explain how {n} {v2} {n2} in {l}",
    "Write a {n} for {n2} with {n3}",
    "Can you {v} my {n} so it {v2} {n2}",
    "Compare {n} and {n2} for a {n3}",
    "Give me a plan to {v} the {n} before {n2}",
    "Why does my {n} {v} the {n2} twice",
    "Summarize the {n} of {n2} and {n3}",
    "Suggest a {n} to {v} {n2} for {l}",
    "Draft a {n} asking about the {n2}",
)
_INTENTS = ("code_generation", "explanation", "writing", "comparison", "planning", "debugging", "summarization")
_CASUAL = ("hey can u {q} pls", "{q} thx", "yo {q}??", "hi, {q} pls", "need help: {q}")
_FORMAL = ("Good afternoon. Could you kindly {q}?", "Dear assistant, I would appreciate it if you could {q}.")
_VERBOSE = (
    "So I have been working on this as a {r} for a while and I would really like it if you could {q}, thanks!",
    "Context: I'm a {r} and my {n} keeps getting in the way. Anyway, {q}. Any detail helps.",
)
_SHORT_FOLLOWUPS = ("thanks!", "ok", "make it shorter", "can you explain that again?", "now in bullet points")
_SHORT_REPLIES = ("Sure!", "You're welcome!", "Glad that helped.", "Of course, here it is.", "Anything else?")
_NOISE = {
    "surface_noise": ("typo_misspelling", "colloquial_speech", "punctuation_format", "emotional_attitude"),
    "incomplete_info": ("missing_slots", "vague_slot_values", "incomplete_sentence", "context_dependency"),
    "semantic_ambiguity": ("unclear_priority", "multi_intent", "intent_ambiguity", "self_contradiction"),
}
_DIMENSIONS = {
    "role": ("engineer", "student", "designer", "teacher", "nurse", "lawyer", "chef", "researcher", "retiree"),
    "age_band": ("18_24", "25_34", "35_44", "45_54", "55_64", "65_plus"),
    "communication_style": ("casual", "formal", "terse", "verbose"),
    "expertise": ("novice", "intermediate", "expert"),
    "patience": ("low", "medium", "high"),
    "goal_orientation": ("exploratory", "task_focused"),
    "tone": ("friendly", "neutral", "impatient", "anxious"),
    "domain": ("software", "finance", "travel", "health", "education", "cooking", "law"),
}
_START = datetime(2026, 2, 1, 8, 0, 0)


class _Language:
    """One language's running text, drawn with Zipf word frequencies a buffer at a time: each word form comes plain,
    capitalised, and with a full stop or a comma after it, so that the buffer reads as sentences. The buffer is one
    string (its bytes gathered with numpy), and a text is a slice of it: Python touches no word one by one."""

    BUFFER = 1 << 18  # words drawn at a time (at most)

    def __init__(self, code: str, rng: np.random.Generator):
        self.code, self.rng = code, rng
        self.spaced = code in _SPACED
        words = _words(code)
        if self.spaced:
            forms = words + [w[:1].upper() + w[1:] for w in words] + [w + "." for w in words]
            forms += [w[:1].upper() + w[1:] + "." for w in words] + [w + "," for w in words]
        else:
            stop, comma = ("。", "、") if code == "ja" else ("。", "，")
            forms = words + words + [w + stop for w in words] + [w + stop for w in words] + [w + comma for w in words]
        self.forms = forms if code == "en" else []  # `words` is for English queries only
        self.size = len(words)
        separator = " " if self.spaced else ""
        encoded = [(form + separator).encode() for form in forms]
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self.byte_lengths = np.array([len(e) for e in encoded], dtype=np.int64)
        self.byte_starts = np.cumsum(self.byte_lengths) - self.byte_lengths
        self.char_lengths = np.array([len(form) + len(separator) for form in forms], dtype=np.int64)
        self.ranks = _zipf_table(self.size)
        self.codes = np.zeros(0, dtype=np.int64)  # the buffer's word forms
        self.buffer, self.char_ends = "", []  # its text, and where each word ends in it
        self.at, self.drawn = 0, 1 << 12  # the next word; a language little used draws little

    def _refill(self) -> None:
        n = self.drawn = min(self.drawn * 2, self.BUFFER)
        index = self.ranks[self.rng.integers(len(self.ranks), size=n)]
        draw = self.rng.random(n)
        stop = draw < 1 / 14  # a sentence of ~14 words
        comma = ~stop & (draw < 1 / 14 + 1 / 12)
        capital = np.r_[True, stop[:-1]]
        variant = np.where(stop, 2, np.where(comma, 4, 0)) + capital * np.where(comma, 0, 1)
        variant[capital & comma] = 1  # a capitalised word takes no comma
        codes = variant * self.size + index
        lengths = self.byte_lengths[codes]
        ends = np.cumsum(lengths)
        positions = np.arange(ends[-1]) + np.repeat(self.byte_starts[codes] - (ends - lengths), lengths)
        self.buffer = self.blob[positions].tobytes().decode()
        self.codes, self.char_ends, self.at = codes, np.cumsum(self.char_lengths[codes]).tolist(), 0

    def words(self, count: int) -> list[str]:
        """The next `count` word forms, as a list."""
        if self.at + count > len(self.codes):
            self._refill()
        taken = self.codes[self.at : self.at + count].tolist()
        self.at += count
        return [self.forms[code] for code in taken]

    def text(self, chars: int) -> str:
        """Running text of about `chars` characters, starting with a capital and ending a sentence."""
        parts = []
        while True:
            if self.at >= len(self.codes):
                self._refill()
            start = self.char_ends[self.at - 1] if self.at else 0
            stop = bisect_left(self.char_ends, start + chars)
            if stop >= len(self.codes):  # past the buffer: what is left of it, then the next one
                parts.append(self.buffer[start:])
                chars -= len(self.buffer) - start
                self.at = len(self.codes)
                continue
            parts.append(self.buffer[start : self.char_ends[stop]])
            self.at = stop + 1
            break
        text = "".join(parts)
        if self.spaced:
            text = text.rstrip(" ")
            text = text[:1].upper() + text[1:]
            return text if text[-1] == "." else text.rstrip(",") + "."
        return text if text[-1] == "。" else text.rstrip("、，") + "。"


@lru_cache(maxsize=None)
def _zipf_table(size: int, slots: int = 1 << 21) -> np.ndarray:
    """Word ranks by quantile, for drawing ranks with Zipf-Mandelbrot frequencies (those of running text) by one
    lookup: rank r is drawn with probability ~ 1 / (r + 2.7)."""
    weights = 1.0 / (np.arange(1, size + 1, dtype=np.float64) + 2.7)
    cumulative = np.cumsum(weights) / weights.sum()
    return np.minimum(np.searchsorted(cumulative, (np.arange(slots) + 0.5) / slots), size - 1).astype(np.uint16)


@lru_cache(maxsize=None)
def _words(code: str) -> list[str]:
    """The word forms of a language, commonest first: the same for every store (a fixed seed)."""
    rng = np.random.default_rng(sum(map(ord, code)))
    size = VOCABULARY if code == "en" else 20_000
    if code in ("zh", "ja"):
        hanzi = np.array([chr(c) for c in rng.choice(np.arange(0x4E00, 0x9FA6), 3000, replace=False)])
        kana, katakana = np.array(_KANA), np.array(_KATAKANA)
        words: list[str] = []
        while len(words) < size:
            batch = 4096
            if code == "zh":
                lengths = rng.choice((1, 2, 2, 2, 3), batch)
                chars = hanzi[rng.integers(len(hanzi), size=(batch, 3))]
                drawn = ["".join(row[:n]) for row, n in zip(chars.tolist(), lengths.tolist())]
            else:
                lengths = rng.integers(1, 3, batch), rng.integers(1, 4, batch), rng.integers(2, 6, batch)
                kanji = hanzi[rng.integers(len(hanzi), size=(batch, 2))].tolist()
                hira = kana[rng.integers(len(kana), size=(batch, 3))].tolist()
                kata = katakana[rng.integers(len(katakana), size=(batch, 5))].tolist()
                foreign = (rng.random(batch) < 0.2).tolist()
                drawn = [
                    "".join(kata[i][: lengths[2][i]])
                    if foreign[i]
                    else "".join(kanji[i][: lengths[0][i]]) + "".join(hira[i][: lengths[1][i]])
                    for i in range(batch)
                ]
            words = list(dict.fromkeys(words + drawn))
        words = words[:size]
        noise = rng.random(size) * 2
        return [words[i] for i in np.argsort([len(w) for w in words] + noise, kind="stable")]
    onsets, nuclei, codas, suffixes = (np.array(part) for part in _SYLLABLES[code])
    words = list(dict.fromkeys(_FUNCTION_WORDS[code].split()))
    while len(words) < size:
        batch = 8192
        syllables = rng.choice((1, 1, 2, 2, 2, 3, 3, 4), batch).tolist()
        parts = np.char.add(
            np.char.add(
                onsets[rng.integers(len(onsets), size=(batch, 4))], nuclei[rng.integers(len(nuclei), size=(batch, 4))]
            ),
            codas[rng.integers(len(codas), size=(batch, 4))],
        ).tolist()
        ends = suffixes[rng.integers(len(suffixes), size=batch)].tolist()
        drawn = ["".join(row[:n]) + end for row, n, end in zip(parts, syllables, ends)]
        words = list(dict.fromkeys(words + drawn))
    common = len(_FUNCTION_WORDS[code].split())
    rest = words[common:size]
    noise = rng.random(len(rest)) * 6  # short words are the common ones (Zipf's law of abbreviation), roughly
    return words[:common] + [rest[i] for i in np.argsort([len(w) for w in rest] + noise, kind="stable")]


class _Writer:
    """Draws the texts of one store: the languages' words, turn lengths, Markdown blocks."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.np = np.random.default_rng(seed)
        self.languages = {code: _Language(code, self.np) for code in ("en", *LANGUAGE_SHARES)}
        self.english = self.languages["en"]
        self.identifiers = [w for w in _words("en")[:8000] if w.isascii() and w.isalpha() and len(w) > 2]
        self.code_lines: list[str] = []  # drawn at the first code block

    def reply_chars(self, first: bool) -> int:
        draw = self.rng.random()
        if draw < 0.03:
            if not first:
                return 0  # a one-liner, to a follow-up ("thanks!")
        elif draw < 0.05:  # the tail: long code dumps and documents
            return min(int(6000 * (1 - self.rng.random()) ** (-1 / 1.3)), 80_000)
        return max(40, int(self.rng.lognormvariate(np.log(REPLY_MEDIAN_CHARS), 1.0)))

    def reply(self, language: _Language, first: bool = True) -> str:
        """An assistant turn: Markdown paragraphs, lists, headings and code blocks up to its drawn length."""
        budget = self.reply_chars(first)
        if budget == 0:
            return self.rng.choice(_SHORT_REPLIES)
        blocks: list[str] = []
        used = 0
        while used < budget:
            kind = self.rng.random()
            room = budget - used
            size = min(room, max(60, int(self.rng.expovariate(1 / 500))))
            if kind < 0.55 or room < 120:
                block = language.text(size)
            elif kind < 0.70:
                block = "\n".join(f"- {language.text(max(20, size // 4))}" for _ in range(self.rng.randint(2, 6)))
            elif kind < 0.78:
                items = self.rng.randint(2, 6)
                block = "\n".join(f"{i}. {language.text(max(20, size // items))}" for i in range(1, items + 1))
            elif kind < 0.83:
                block = "## " + language.text(30).rstrip(".。")
            else:
                block = self.code(size)
            blocks.append(block)
            used += len(block) + 2
        return "\n\n".join(blocks)

    def code(self, chars: int) -> str:
        """A fenced code block of about `chars` characters, of lines drawn from the store's pool."""
        if not self.code_lines:
            self.code_lines = self._code_lines(1 << 15)
        count = max(1, chars // 32)
        picked = self.np.integers(len(self.code_lines), size=count).tolist()
        body = "\n".join([self.code_lines[i] for i in picked])
        return f"```{self.rng.choice(_CODE_LANGUAGES)}\n{body}\n```"

    def _code_lines(self, count: int) -> list[str]:
        templates = self.np.integers(len(_CODE_LINES), size=count).tolist()
        names = self.np.integers(len(self.identifiers), size=(count, 4)).tolist()
        numbers = self.np.integers(1000, size=count).tolist()
        pick = self.identifiers
        lines = []
        for template, (a, b, c, d), n in zip(templates, names, numbers):
            a, b, c, d = pick[a], pick[b], pick[c], pick[d]
            lines.append(_CODE_LINES[template].format(a=a, b=b, c=c, d=d, A=a.capitalize(), n=n))
        return lines

    def followup(self, language: _Language) -> str:
        draw = self.rng.random()
        if draw < 0.1 and language.code == "en":
            return self.rng.choice(_SHORT_FOLLOWUPS)
        if draw < 0.13:  # a paste: code or an error log, hundreds of bytes to a few KB
            return language.text(40) + "\n\n" + self.code(int(self.rng.lognormvariate(np.log(800), 0.8)))
        chars = max(8, int(self.rng.lognormvariate(np.log(FOLLOWUP_MEDIAN_CHARS), 0.8)))
        text = language.text(chars)
        return text[:-1] + "?" if language.spaced and self.rng.random() < 0.5 else text

    def content(self, count: int) -> list[str]:
        """Words for a query's slots: the vocabulary past its function words, with Zipf frequencies."""
        words = _words("en")
        common = len(_FUNCTION_WORDS["en"].split())
        start = common + 100
        ranks = (self.np.zipf(1.2, size=count) - 1) % (len(words) - start) + start
        return [words[rank] for rank in ranks.tolist()]

    def query(self) -> str:
        """A base query of the pool: a request shape with words of the vocabulary."""
        verb, verb2, noun, noun2, noun3, place = self.content(6)
        text = self.rng.choice(_REQUESTS).format(v=verb, v2=verb2, n=noun, n2=noun2, n3=noun3, l=place)
        if self.rng.random() < 0.5:  # a detail clause: queries of 6 to 30 words
            text += ", " + " ".join(w.strip(".,").lower() for w in self.english.words(self.rng.randint(3, 14)))
        return text

    def styled(self, query: str, style: str, role: str) -> str:
        """`query` rewritten in a persona's style, with a few word edits: near duplicates of each other."""
        rng = self.rng
        words = query.split()
        for _ in range(rng.randint(0, 2)):
            at = rng.randrange(len(words))
            edit = rng.random()
            if edit < 0.4:
                words[at] = self.content(1)[0]
            elif edit < 0.7 and len(words) > 4:
                words.pop(at)
            elif len(words[at]) > 3:
                letter = rng.randrange(len(words[at]))
                words[at] = words[at][:letter] + words[at][letter + 1 :]
        q = " ".join(words)
        lowered = q[:1].lower() + q[1:]
        if style == "casual":
            return rng.choice(_CASUAL).format(q=lowered.replace("you", "u").lower())
        if style == "formal":
            return rng.choice(_FORMAL).format(q=lowered)
        if style == "verbose":
            return rng.choice(_VERBOSE).format(q=lowered, r=role, n=self.content(1)[0])
        return " ".join(w for w in words if w.lower() not in ("a", "the", "me", "my", "can", "you")) + "."

    def noisy(self, text: str) -> tuple[str, str, list[str]]:
        rng = self.rng
        layer = rng.choice(list(_NOISE))
        strategies = rng.sample(_NOISE[layer], 2)
        words = text.split()
        if len(words) > 3:
            words.pop(rng.randrange(len(words)))
        at = rng.randrange(len(words))
        if len(words[at]) > 2:
            letter = rng.randrange(len(words[at]) - 1)
            word = words[at]
            words[at] = word[:letter] + word[letter + 1] + word[letter] + word[letter + 2 :]
        return " ".join(words).lower(), layer, strategies


def _persona(index: int, rng: random.Random, queries: int, per_persona: int) -> dict[str, Any]:
    features = {"role": _DIMENSIONS["role"][index % len(_DIMENSIONS["role"])]}
    for name, values in _DIMENSIONS.items():
        if name != "role" and rng.random() < 0.7:  # a persona samples ~70% of its dimensions
            features[name] = rng.choice(values)
    draw, language = rng.random(), "en"
    for code, share in LANGUAGE_SHARES.items():
        if draw < share:
            language = code
            break
        draw -= share
    if language != "en":
        features["language"] = language
    assigned = rng.sample(range(queries), min(per_persona, queries))
    return {"persona_id": f"persona_{index:06d}", "features": features, "language": language, "queries": assigned}


def iter_realistic_interactions(
    count: int, personas: int, queries: int, queries_per_persona: int = 5, seed: int = 0
) -> Iterator[dict[str, Any]]:
    """The interactions of `write_realistic_store`, one at a time, without writing anything (for benchmarks that
    need more of them than a disk holds)."""
    for name, value in (("count", count), ("personas", personas), ("queries", queries)):
        if value < 1:
            raise ValueError(f"iter_realistic_interactions: expected {name} >= 1, got {value!r}")
    if queries_per_persona < 1:
        raise ValueError(
            f"iter_realistic_interactions: expected queries_per_persona >= 1, got {queries_per_persona!r}"
        )
    writer = _Writer(seed)
    rng = writer.rng
    pool = [writer.query() for _ in range(queries)]
    weights = [weight for _model, _provider, weight in MODELS]
    persona = None
    for index in range(count):
        number = index * personas // count  # a persona's interactions one after another, as upstream writes them
        if persona is None or persona["number"] != number:
            persona = _persona(number, rng, queries, queries_per_persona)
            persona["number"], persona["done"] = number, 0
        yield _interaction(writer, index, persona, pool, rng.choices(MODELS, weights)[0])
        persona["done"] += 1


def _interaction(writer: _Writer, index: int, persona: dict, pool: list[str], model: tuple) -> dict[str, Any]:
    rng = writer.rng
    query_number = persona["queries"][persona["done"] % len(persona["queries"])]
    original = pool[query_number]
    features = persona["features"]
    styled = rng.random() < TRANSFER_PROBABILITY
    if styled:
        initial = writer.styled(original, features.get("communication_style", "casual"), features["role"])
    else:
        initial = original
    language = writer.languages[persona["language"]]
    created = _START + timedelta(seconds=index * 37 + rng.randrange(30))
    stamp = created.strftime("%Y%m%d_%H%M%S")
    model_name, provider, _weight = model
    turns = rng.choices(range(1, len(TURNS) + 1), TURNS)[0]
    noisy = rng.random() < NOISE_SHARE
    first = initial
    metadata: dict[str, Any] = {
        "created_at": created.isoformat(),
        "distractor_applied": noisy,
        "assistant_model": {"model": model_name, "provider": provider},
        "query_id": f"query_{query_number:05d}",
    }
    followups = [writer.followup(language) for _ in range(turns - 1)]
    if noisy:
        text, layer, strategies = writer.noisy(initial)
        first = text
        metadata["distractor_type"] = "semantic"
        if index % 2:  # layout A: noisy versions lists (rule-based distractor, older stores)
            versions = {
                "initial_query": {
                    "clean_query": initial,
                    "noisy_versions": [{"noisy_text": text, "noise_type": layer, "applied_strategies": strategies}],
                }
            }
            if followups and rng.random() < 0.5:
                clean = followups[0]
                used = writer.noisy(clean)[0]
                versions["followups"] = [
                    {
                        "clean_feedback": clean,
                        "noisy_versions": [{"noisy_text": used, "noise_type": "surface_noise"}],
                        "used_version": used,
                    }
                ]
                followups[0] = used
            metadata["noisy_versions"] = versions
        else:  # layout B: the semantic three-layer distractor's result
            metadata["semantic_noise"] = {
                "initial_query": {
                    "original_text": initial,
                    "noisy_text": text,
                    "layer": layer,
                    "layer_index": list(_NOISE).index(layer) + 1,
                    "applied_strategies": strategies,
                    "semantics": {"intent": rng.choice(_INTENTS), "slots": {"topic": original.split()[-1]}},
                }
            }
    messages: list[dict[str, Any]] = []
    clock = created
    for turn, prompt in enumerate([first, *followups]):
        user: dict[str, Any] = {"role": "user", "content": prompt, "timestamp": clock.isoformat()}
        user["metadata"] = {"is_initial": True, "was_noised": noisy} if turn == 0 else {"is_followup": True}
        clock += timedelta(seconds=rng.randint(2, 40))
        messages.append(user)
        messages.append(
            {
                "role": "assistant",
                "content": writer.reply(language, first=turn == 0),
                "timestamp": clock.isoformat(),
                "metadata": {"model": model_name, "provider": provider},
            }
        )
        clock += timedelta(seconds=rng.randint(5, 120))
    record: dict[str, Any] = {
        "interaction_id": f"interaction_{persona['persona_id']}_{stamp}_{index:07d}",
        "persona_id": persona["persona_id"],
        "persona_features": features,
    }
    if styled or rng.random() < 0.8:  # upstream leaves it out when no transfer was applied, sometimes
        record["original_query"] = original
    record.update(initial_query=initial, messages=messages, num_turns=turns, metadata=metadata)
    return record


def write_realistic_store(
    folder: str | Path,
    count: int,
    personas: int,
    queries: int,
    queries_per_persona: int = 5,
    seed: int = 0,
    *,
    layout: str = "files",
) -> Path:
    """Write `count` interactions of `personas` personas over a pool of `queries` base queries (each persona is given
    `queries_per_persona` of them) into `folder`, drawn from `seed` (see the module docstring).

    `layout`: "files" writes upstream `InteractionStorage`'s layout (one pretty-printed JSON file per interaction,
    `index.json`, a `token_usage_*.json`); "jsonl" one `interactions.jsonl` file (one record a line, as users keep
    stores too). Returns the folder."""
    if layout not in ("files", "jsonl"):
        raise ValueError(f"write_realistic_store: expected layout 'files' or 'jsonl', got {layout!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    interactions = iter_realistic_interactions(count, personas, queries, queries_per_persona, seed)
    if layout == "jsonl":
        with (folder / "interactions.jsonl").open("wb") as f:
            for interaction in interactions:
                f.write(orjson.dumps(interaction) + b"\n")
        return folder
    index = []
    # Creating a file costs the kernel more than drawing its text: a thread writes them while the next are drawn.
    with ThreadPoolExecutor(1) as pool:
        pending: deque = deque()
        for interaction in interactions:
            name = f"{interaction['interaction_id']}.json"
            pending.append(
                pool.submit(_write, str(folder / name), orjson.dumps(interaction, option=orjson.OPT_INDENT_2))
            )
            if len(pending) > 256:
                pending.popleft().result()
            index.append(index_entry(interaction, name, interaction["metadata"]["query_id"]))
        for written in pending:
            written.result()
    document = {"interactions": index, "count": len(index), "last_updated": index[-1]["created_at"]}
    (folder / "index.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    (folder / "token_usage_realistic.json").write_bytes(orjson.dumps(_token_usage(count, seed)))
    return folder


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _token_usage(count: int, seed: int) -> dict[str, Any]:
    """A small TokenTracker export: one record per module call of the first interactions."""
    rng = random.Random(seed)
    return token_usage_export(
        (module, *MODELS[index % len(MODELS)][:2], rng.randint(80, 2000), rng.randint(40, 1500),
         (_START + timedelta(minutes=index)).isoformat())  # fmt: skip
        for index in range(min(count, 16))
        for module in UPSTREAM_MODULES
    )


__all__ = ["iter_realistic_interactions", "write_realistic_store"]
