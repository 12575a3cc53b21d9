"""Bad checkpoint input: each case gets one clear line naming the file and problem, and no output folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import official_fixture_sets
from tests.official.manifest_config import config_from_manifest
from videollama.checkpoint.convert import convert_official
from videollama.errors import CheckpointError

SETS = official_fixture_sets()
pytestmark = pytest.mark.skipif(not SETS, reason="no official fixture sets found")
SOURCES = {"eva": "eva_vit_g.pth", "blip2": "blip2_pretrained_flant5xxl.pth", "imagebind": "imagebind_huge.pth",
           "vl": "vl_ckpt.pth", "al": "al_ckpt.pth"}


class Evil:
    """Anything that is not a tensor must never be unpickled."""


@pytest.fixture(scope="module")
def root() -> Path:
    return SETS[0]


@pytest.fixture(scope="module")
def cfg(root):
    return config_from_manifest(json.loads((root / "manifest.json").read_text()))


def _convert(tmp_path: Path, root: Path, cfg, llm_dir: Path | None = None, **override) -> None:
    sources = {k: root / v for k, v in SOURCES.items()}
    for k, v in override.items():
        if v is None:
            sources.pop(k)
        else:
            sources[k] = v
    convert_official(tmp_path / "out", cfg, sources, llm_dir or root / "llama")


def _bad_files(tmp_path: Path, root: Path) -> dict[str, Path]:
    files = {}
    files["empty"] = tmp_path / "empty.pth"
    files["empty"].write_bytes(b"")
    files["truncated"] = tmp_path / "truncated.pth"
    data = (root / "vl_ckpt.pth").read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["text"] = tmp_path / "notes.pth"
    files["text"].write_text("this is not a checkpoint\n")
    files["random"] = tmp_path / "random.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(3, 3)}}, files["random"])
    files["pickle"] = tmp_path / "pickle.pth"
    torch.save({"model": {"video_query_tokens": torch.zeros(1)}, "obj": Evil()}, files["pickle"])
    return files


CASES = [
    ("vl", "missing", r"file not found"),
    ("vl", "empty", r"file is empty"),
    ("vl", "truncated", r"truncated, corrupt or not a PyTorch checkpoint"),
    ("al", "text", r"not a PyTorch checkpoint file"),
    ("vl", "random", r"keys not expected in vision-language branch checkpoint.*encoder\.weight"),
    ("vl", "pickle", r"refusing to unpickle"),
]


@pytest.mark.parametrize("slot,kind,message", CASES)
def test_bad_file_gets_one_line_error(tmp_path, root, cfg, slot, kind, message) -> None:
    files = _bad_files(tmp_path, root)
    path = files.get(kind, tmp_path / "does-not-exist.pth")
    with pytest.raises(CheckpointError, match=message) as info:
        _convert(tmp_path, root, cfg, **{slot: path})
    text = str(info.value)
    assert "\n" not in text and str(path) in text
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary folder left


def test_wrong_slot_is_named(tmp_path, root, cfg) -> None:
    with pytest.raises(CheckpointError, match=r"al_ckpt\.pth.*looks like the audio-language.*--al"):
        _convert(tmp_path, root, cfg, vl=root / "al_ckpt.pth")
    with pytest.raises(CheckpointError, match=r"vl_ckpt\.pth.*training-runner container.*--eva"):
        _convert(tmp_path, root, cfg, eva=root / "vl_ckpt.pth")
    with pytest.raises(CheckpointError, match=r"missing official file\(s\) for --al"):
        _convert(tmp_path, root, cfg, al=None)
    assert not (tmp_path / "out").exists()


def test_dims_that_do_not_match_the_config(tmp_path, root, cfg) -> None:
    wrong = cfg.replace(vision=cfg.vision.__class__(**{**cfg.vision.__dict__, "width": cfg.vision.width * 2}),
                        image_qformer=cfg.image_qformer.__class__(
                            **{**cfg.image_qformer.__dict__, "encoder_width": cfg.vision.width * 2}))
    with pytest.raises(CheckpointError, match=r"eva_vit_g\.pth: '.*' has shape .* but the config expects"):
        _convert(tmp_path, root, wrong)


def test_unknown_keys_are_named(tmp_path, root, cfg) -> None:
    sd = torch.load(root / "vl_ckpt.pth", weights_only=True)
    sd["model"]["video_Qformer.bert.extra_head.weight"] = torch.zeros(2)
    torch.save(sd, tmp_path / "vl_extra.pth")
    with pytest.raises(CheckpointError, match=r"vl_extra\.pth: 1 keys not expected.*extra_head"):
        _convert(tmp_path, root, cfg, vl=tmp_path / "vl_extra.pth")


def test_missing_weight_is_named(tmp_path, root, cfg) -> None:
    sd = torch.load(root / "vl_ckpt.pth", weights_only=True)
    del sd["model"]["llama_proj.bias"]
    torch.save(sd, tmp_path / "vl_partial.pth")
    with pytest.raises(CheckpointError, match=r"vl_partial\.pth: 1 missing weights, e\.g\. video_proj\.bias"):
        _convert(tmp_path, root, cfg, vl=tmp_path / "vl_partial.pth")


def test_bad_llm_folder(tmp_path, root, cfg) -> None:
    with pytest.raises(CheckpointError, match="LLM folder not found"):
        _convert(tmp_path, root, cfg, llm_dir=tmp_path / "nope")
    empty = tmp_path / "llm"
    shutil.copytree(root / "llama", empty)
    for weights in empty.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(CheckpointError, match="no weight files"):
        _convert(tmp_path, root, cfg, llm_dir=empty)


def test_corrupt_model_folder_on_load(tmp_path, root, cfg) -> None:
    from videollama.model.videollama import VideoLLaMA

    folder = convert_official(tmp_path / "m", cfg, {k: root / v for k, v in SOURCES.items()}, root / "llama")
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=rf"{shard.name}: corrupt safetensors file"):
        VideoLLaMA.from_pretrained(folder)
    with pytest.raises(CheckpointError, match="not a videollama model folder"):
        VideoLLaMA.from_pretrained(root)

