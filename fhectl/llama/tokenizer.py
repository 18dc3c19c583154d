"""SmolLM2's byte-level BPE tokenizer and its ChatML prompt, offline, through `tokenizers`.

Two sources give the same tokenizer: the vocabulary and merges stored in a GGUF file's
metadata (gguf.py reads them and calls `byte_level_bpe`), or a Hugging Face tokenizer.json.
SmolLM2 reuses StarCoder's pre-tokenizer: every digit is its own piece, then GPT-2's byte-level
split (llama.cpp calls this pre-tokenizer "smollm").
"""

import json
import re
from pathlib import Path
from typing import Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from fhectl.errors import InputError

IM_START, IM_END = "<|im_start|>", "<|im_end|>"  # ChatML turn delimiters, special tokens in SmolLM2

# The system turn SmolLM2's chat template inserts when the conversation does not start with one.
_TEMPLATE_DEFAULT_SYSTEM = re.compile(re.escape(IM_START) + r"system\n(.*?)" + re.escape(IM_END), re.S)


def byte_level_bpe(tokens: Sequence[str], merges: Sequence[str], special_tokens: Sequence[str],
                   *, split_digits: bool) -> Tokenizer:
    """A byte-level BPE tokenizer from a vocabulary (id = index), "a b" merge rules and special tokens.

    Special tokens are matched in the text before BPE runs, so "<|im_start|>" is one id, not 7.
    """
    vocab = {token: i for i, token in enumerate(tokens)}
    # Byte-level symbols never contain a space (a space byte is "Ġ"), so one space splits a rule.
    pairs = [tuple(rule.split(" ", 1)) for rule in merges]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                               if split_digits else byte_level)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    return tokenizer


class LlamaTokenizer:
    """Text <-> token ids, and the chat prompt the instruct model was tuned on. `source` names the files."""

    def __init__(self, tokenizer: Tokenizer, *, bos_token_id: int | None, eos_token_id: int | None,
                 chat_template: str | None, source: str):
        self._tokenizer = tokenizer
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.chat_template = chat_template
        self.source = source
        found = _TEMPLATE_DEFAULT_SYSTEM.search(chat_template or "")
        self.default_system = found.group(1) if found else None

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, token_ids) -> str:
        # Keep special tokens: decode(encode(prompt)) must give back the "<|im_start|>" markers.
        return self._tokenizer.decode([int(t) for t in token_ids], skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def chat_prompt(self, user_text: str, system: str | None = None) -> str:
        """One user turn in ChatML, ending where the assistant's reply begins.

        What SmolLM2's chat template renders for [{"role": "user", ...}] with
        add_generation_prompt=True; without `system` the template's own default system turn is
        used (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face").
        """
        system = self.default_system if system is None else system
        turns = [] if system is None else [("system", system)]
        turns.append(("user", user_text))
        text = "".join(f"{IM_START}{role}\n{content}{IM_END}\n" for role, content in turns)
        return text + f"{IM_START}assistant\n"

    @classmethod
    def from_hf_dir(cls, path) -> "LlamaTokenizer":
        """tokenizer.json, with bos/eos and chat_template from tokenizer_config.json when present."""
        directory = Path(path)
        tokenizer_json = directory / "tokenizer.json"
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_json))
        except Exception as err:  # tokenizers raises a plain Exception for a missing or bad file
            raise InputError(f"cannot read tokenizer {tokenizer_json}: {err}") from err
        config_path = directory / "tokenizer_config.json"
        try:
            config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read {config_path}: {err}") from err

        def special_id(key):
            token = config.get(key)
            token = token.get("content") if isinstance(token, dict) else token  # AddedToken written out
            return None if token is None else tokenizer.token_to_id(token)

        return cls(tokenizer, bos_token_id=special_id("bos_token"), eos_token_id=special_id("eos_token"),
                   chat_template=config.get("chat_template"), source=str(tokenizer_json))

    def save_hf_dir(self, path) -> Path:
        """Write tokenizer.json and tokenizer_config.json, which from_hf_dir reads back."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        self._tokenizer.save(str(directory / "tokenizer.json"))
        config = {"chat_template": self.chat_template}
        for key, token_id in (("bos_token", self.bos_token_id), ("eos_token", self.eos_token_id)):
            if token_id is not None:
                config[key] = self._tokenizer.id_to_token(token_id)
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return directory
