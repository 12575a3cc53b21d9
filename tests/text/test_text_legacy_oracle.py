"""`LegacyLlamaTokenizer` vs. ids and text recorded from transformers 4.28's slow `LlamaTokenizer`.

The oracle (tests/text/data/legacy_oracle.json, made by make_legacy_oracle.py) was recorded on the
`tokenizer.model` of an official fixture set; the test runs against every discovered set whose
`tokenizer.model` has the same SHA-256 and is skipped otherwise. It covers three folder layouts:
LLaMA-2 style (pad = unk) and Vicuna-v0 style with an added `[PAD]` given as a plain string or as a dict.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from videollama.text.tokenizer import LegacyLlamaTokenizer

from .conftest import SETS

ORACLE = Path(__file__).parent / "data" / "legacy_oracle.json"


def _oracle() -> dict:
    return json.loads(ORACLE.read_text(encoding="utf-8"))


def _matching_model(sha: str) -> Path | None:
    for s in SETS:
        f = s / "llama" / "tokenizer.model"
        if f.is_file() and hashlib.sha256(f.read_bytes()).hexdigest() == sha:
            return f
    return None


ORACLE_DATA = _oracle() if ORACLE.is_file() else None
MODEL = _matching_model(ORACLE_DATA["tokenizer_model_sha256"]) if ORACLE_DATA else None
VARIANTS = sorted(ORACLE_DATA["variants"]) if ORACLE_DATA else []

pytestmark = pytest.mark.skipif(MODEL is None, reason="no fixture set with the oracle's tokenizer.model")


def _folder(tmp_path: Path, files: dict) -> Path:
    shutil.copy(MODEL, tmp_path / "tokenizer.model")
    (tmp_path / "special_tokens_map.json").write_text(json.dumps(files["special_tokens_map"]))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(files["tokenizer_config"]))
    if files.get("added_tokens"):
        (tmp_path / "added_tokens.json").write_text(json.dumps(files["added_tokens"]))
    return tmp_path


@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_transformers_428(tmp_path, variant):
    v = ORACLE_DATA["variants"][variant]
    tok = LegacyLlamaTokenizer.from_pretrained(_folder(tmp_path, v["files"]))
    assert len(tok) == v["len"]
    assert {
        "bos": tok.bos_token_id, "eos": tok.eos_token_id, "unk": tok.unk_token_id,
        "pad": tok.pad_token_id, "image": tok.image_token_id, "audio": tok.audio_token_id,
    } == v["ids"]
    for case in v["cases"]:
        text = case["text"]
        assert tok.encode(text, add_bos=True) == case["with_bos"], repr(text)
        assert tok.encode(text, add_bos=False) == case["without_bos"], repr(text)
        assert tok.encode(text, add_bos=True, max_length=8) == case["trunc8"], repr(text)
        assert tok.decode(case["with_bos"]) == case["decode"], repr(text)
    for case in v["decode_cases"]:
        assert tok.decode(case["ids"]) == case["decode"], case["ids"]
