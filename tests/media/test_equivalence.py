"""Number-by-number equivalence with the official demo's preprocessing (reference tensors in the fixtures).

Discovers every manifest in $VIDEOLLAMA_MEDIA_FIXTURES (default: <repo>/../shared/fixtures/media). Everything
(file names, sizes, expected values) comes from the manifest and its safetensors files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from videollama.errors import MediaError, NoAudioError
from videollama.media import load_audio, load_image, load_video, load_waveform_16k

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("VIDEOLLAMA_MEDIA_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures" / "media"))


def _items() -> list:
    manifests = sorted(FIXTURES.rglob("manifest.json")) if FIXTURES.is_dir() else []
    params = []
    for manifest in manifests:
        data = json.loads(manifest.read_text())
        for key, item in data.get("items", {}).items():
            params.append(pytest.param(manifest.parent, key, item, id=f"{manifest.parent.name}/{key}"))
    if not params:
        params.append(pytest.param(None, None, None, marks=pytest.mark.skip(
            reason=f"no media fixtures at {FIXTURES} (set VIDEOLLAMA_MEDIA_FIXTURES)"), id="no-fixtures"))
    return params


def _load_ref(base: Path, item: dict) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(base / item["reference_file"]))


@pytest.mark.parametrize("base,key,item", _items())
def test_video(base: Path, key: str, item: dict) -> None:
    video = item.get("video")
    if not isinstance(video, dict) or "frame_indices" not in video:
        pytest.skip(f"{key}: no video reference")
    ref = _load_ref(base, item)
    clip = load_video(base / item["media_file"], n_frames=video.get("n_frms_requested", 8))
    assert clip.vlen == video["decord_len"]
    assert clip.indices == list(video["frame_indices"])
    assert clip.indices == ref["frame_indices"].tolist()
    assert clip.message == video["timestamp_msg"]
    assert clip.frames.shape[0] == len(video["frame_indices"])
    if "frames_u8_shape" in video:
        assert list(clip.frames.shape) == list(video["frames_u8_shape"])
    if "video_shape" in video:
        assert list(clip.tensor.shape) == list(video["video_shape"])
    if "decord_avg_fps" in video:
        assert clip.fps == pytest.approx(video["decord_avg_fps"], rel=0, abs=1e-9)
    if "frames_u8" in ref:
        diff = np.abs(clip.frames.astype(np.int16) - ref["frames_u8"].astype(np.int16))
        assert diff.max() <= 1, f"{key}: frames_u8 max abs diff {diff.max()}"
        assert diff.mean() <= 0.05, f"{key}: frames_u8 mean abs diff {diff.mean()}"
    if "video" in ref:
        torch.testing.assert_close(clip.tensor, torch.from_numpy(ref["video"]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("base,key,item", _items())
def test_audio(base: Path, key: str, item: dict) -> None:
    audio = item.get("audio")
    if not isinstance(audio, dict):
        pytest.skip(f"{key}: no audio reference")
    path = base / item["media_file"]
    if audio.get("status") != "ok":
        # The official demo silently falls back to video-only; we raise a clear NoAudioError instead.
        with pytest.raises(MediaError) as info:
            load_audio(path)
        assert isinstance(info.value, NoAudioError), f"{key}: expected NoAudioError, got {info.value!r}"
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        return
    ref = _load_ref(base, item)
    clips = load_audio(path)
    assert clips.native_sample_rate == audio["native_sr"]
    if "native_shape_CxN" in audio:
        assert [clips.channels, clips.n_samples_native] == list(audio["native_shape_CxN"])
    assert clips.n_samples_16k == audio["n_samples_16k"]
    assert [list(b) for b in clips.clip_bounds] == [list(b) for b in audio["clip_sample_bounds"]]
    if "audio_clip_sample_bounds" in ref:
        assert [list(b) for b in clips.clip_bounds] == ref["audio_clip_sample_bounds"].tolist()
    if "clip_timepoints_exact" in audio:
        assert [[str(s), str(e)] for s, e in clips.clip_times] == audio["clip_timepoints_exact"]
    assert list(clips.tensor.shape) == list(ref["audio"].shape)
    diff = np.abs(clips.tensor.numpy() - ref["audio"])
    assert diff.max() <= 1e-3, f"{key}: audio fbank max abs diff {diff.max()}"
    if "audio_waveform_16k" in ref:
        wave = load_waveform_16k(path).numpy()
        assert wave.shape == ref["audio_waveform_16k"].shape
        wdiff = np.abs(wave - ref["audio_waveform_16k"]).max()
        assert wdiff <= 1e-5, f"{key}: 16 kHz waveform max abs diff {wdiff}"


@pytest.mark.parametrize("base,key,item", _items())
def test_image(base: Path, key: str, item: dict) -> None:
    if item.get("kind") != "image":
        pytest.skip(f"{key}: not an image")
    ref = _load_ref(base, item)
    path = base / item["media_file"]
    img = load_image(path)
    if "image_resized_u8" in ref:
        assert np.abs(img.resized.astype(np.int16) - ref["image_resized_u8"].astype(np.int16)).max() <= 1
    torch.testing.assert_close(img.tensor, torch.from_numpy(ref["image"]), atol=1e-5, rtol=0)
    if "image_gradio" in ref:
        gradio = load_image(path, exif_transpose=True)
        torch.testing.assert_close(gradio.tensor, torch.from_numpy(ref["image_gradio"]), atol=1e-5, rtol=0)
