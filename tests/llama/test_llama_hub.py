"""resolve_checkpoint: local paths as they are, repo ids from an offline Hugging Face cache built in tmp_path."""

import huggingface_hub.constants
import numpy as np
import pytest

from fhectl.errors import InputError
from fhectl.llama.hub import resolve_checkpoint
from fhectl.llama.model import Llama
from fhectl.llama.weights import load_safetensors_dir, save_safetensors_dir

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_repo_id_resolves_from_the_offline_cache(offline_hub, sharp_weights):
    repo = offline_hub / "models--tiny-org--tiny-llama"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    save_safetensors_dir(sharp_weights, repo / "snapshots" / COMMIT)

    folder = resolve_checkpoint("tiny-org/tiny-llama")
    assert folder == repo / "snapshots" / COMMIT
    ids = [3, 1, 4, 1, 5]
    np.testing.assert_allclose(Llama(load_safetensors_dir(folder)).forward(ids), Llama(sharp_weights).forward(ids),
                               rtol=1e-5, atol=1e-5)  # the checkpoint holds float32


def test_uncached_repo_offline_is_one_input_error(offline_hub):
    with pytest.raises(InputError, match="cannot get Hugging Face repo 'tiny-org/absent'") as info:
        resolve_checkpoint("tiny-org/absent")
    assert "\n" not in str(info.value)


def test_local_paths_are_returned_or_refused(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"")
    assert resolve_checkpoint(tmp_path) == tmp_path
    assert resolve_checkpoint(str(gguf)) == gguf
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="neither a folder nor a .gguf"):
        resolve_checkpoint(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "absent.gguf"))
