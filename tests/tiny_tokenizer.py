"""A tiny word-level tokenizer built offline with `tokenizers`, saved as `transformers` saves one.

Words and punctuation are one token each (`Whitespace` pre-tokenizer), unknown words become `<unk>`, and the
role markers and `</s>` are special tokens, so a test can count a rendered row's tokens by hand.
"""

from pathlib import Path

WORDS = "hey can u help me with this long question please sure here it is be brief ok help".split()
SPECIAL = ["<unk>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
# assistant turns inside {% generation %}: TRL's assistant-only loss can mask them
GENERATION_TEMPLATE = (
    "{%- for m in messages %}{% if m.role == 'assistant' %}<|assistant|> {% generation %}{{ m.content }} </s>"
    "{% endgeneration %}{% else %}<|{{ m.role }}|> {{ m.content }} {% endif %}{% endfor %}"
)
# as GENERATION_TEMPLATE, and `add_generation_prompt` ends a prompt with the assistant's marker, as real templates do:
# TRL's prompt-completion rows then start their completion at the assistant's first token
TRAINING_TEMPLATE = (
    "{%- for m in messages %}{% if m.role == 'assistant' %}<|assistant|>{% generation %}{{ m.content }}</s>"
    "{% endgeneration %}{% else %}<|{{ m.role }}|>{{ m.content }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# no generation marks, and no system role: a row with a system message is rejected
NO_SYSTEM_TEMPLATE = (
    "{%- if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{%- for m in messages %}<|{{ m.role }}|> {{ m.content }} {% if m.role == 'assistant' %}</s>{% endif %}"
    "{% endfor %}"
)


def build(folder: Path, chat_template: str | None) -> Path:
    """Save the tokenizer (with `chat_template`, or none) into `folder`; returns the folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: number for number, token in enumerate(SPECIAL + sorted(set(WORDS) | {",", ".", "Sure"}))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    kwargs = {"chat_template": chat_template} if chat_template else {}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        eos_token="</s>",
        additional_special_tokens=SPECIAL[2:],
        **kwargs,
    )
    tokenizer.save_pretrained(str(folder))
    return folder


def build_bpe(folder: Path, texts: list[str], chat_template: str, vocab_size: int = 400) -> Path:
    """A byte-level BPE trained on `texts` (offline, in a second), with the role markers as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL[1:], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="</s>", additional_special_tokens=SPECIAL[2:], chat_template=chat_template
    )
    tokenizer.save_pretrained(str(folder))
    return folder
