"""SmolLM2's tokenizer from GGUF metadata: known ids, special tokens, ChatML, and the tokenizer.json round trip."""

import pytest

from fhectl.errors import InputError
from fhectl.llama.tokenizer import LlamaTokenizer

# Recorded from this tokenizer after checking that each decodes to the expected piece and the whole
# round-trips; digits are one token each (SmolLM2's StarCoder pre-tokenizer).
KNOWN = {
    "The capital of France is": [504, 3575, 282, 4649, 314],  # The | capital | of | France | is
    "In 2024, 12345 apples.": [788, 216, 34, 32, 34, 36, 28, 216, 33, 34, 35, 36, 37, 13855, 30],
    "<|im_start|>user\nHi<|im_end|>\n": [1, 4093, 198, 26843, 2, 198],
}


@pytest.fixture(scope="module")
def tokenizer(smollm2) -> LlamaTokenizer:
    return smollm2[1]


@pytest.mark.parametrize("text", sorted(KNOWN))
def test_known_ids_and_round_trip(tokenizer, text):
    assert tokenizer.encode(text) == KNOWN[text]
    assert tokenizer.decode(KNOWN[text]) == text


def test_round_trip_of_unicode_and_whitespace(tokenizer):
    text = "héllo wörld 🙂\n\t  two  spaces"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_special_tokens_match_metadata(tokenizer):
    assert tokenizer.vocab_size == 49152
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (1, 2)
    for token, token_id in (("<|endoftext|>", 0), ("<|im_start|>", 1), ("<|im_end|>", 2)):
        assert tokenizer.encode(token) == [token_id]


def test_chat_prompt_is_smollm2_chatml(tokenizer):
    default = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    # What the GGUF's Jinja template renders for one user message with add_generation_prompt=True.
    assert "'<|im_start|>system\n" + default + "<|im_end|>\n'" in tokenizer.chat_template
    assert "'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'" \
        in tokenizer.chat_template
    assert "'<|im_start|>assistant\n'" in tokenizer.chat_template
    assert tokenizer.chat_prompt("Hi?") == (f"<|im_start|>system\n{default}<|im_end|>\n"
                                            "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.chat_prompt("Hi?", system="Be brief.").startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    ids = tokenizer.encode(tokenizer.chat_prompt("Hi?"))
    assert ids[:2] == [1, 9690] and ids[-4:] == [1, 520, 9531, 198] and ids.count(2) == 2  # system; ass|istant|\n


def test_tokenizer_json_round_trip(tokenizer, tmp_path):
    loaded = LlamaTokenizer.from_hf_dir(tokenizer.save_hf_dir(tmp_path))
    text = tokenizer.chat_prompt("Count: 1 2 3")
    assert loaded.encode(text) == tokenizer.encode(text)
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.chat_template) == \
        (1, 2, tokenizer.chat_template)


def test_missing_tokenizer_json_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="tokenizer.json"):
        LlamaTokenizer.from_hf_dir(tmp_path)
