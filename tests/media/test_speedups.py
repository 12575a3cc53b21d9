"""The speed-ups must not change a single output value.

* ``skip_frame=NONREF`` for frames we do not keep (H.264 with B-frames, B-pyramid, open GOP, mp4 and mkv, every
  thread mode) gives frames bit-identical to a plain decode of every frame.
* ``load_video_and_audio`` (audio in a worker thread) equals ``load_video`` + ``load_audio``.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tests.media.conftest import make_video
from videollama.errors import NoAudioError
from videollama.media import load_audio, load_video, load_video_and_audio
from videollama.media import video as V


def _make_bframe_video(
    path: Path, options: dict[str, str], n: int = 96, w: int = 96, h: int = 64, codec: str = "libx264"
) -> Path:
    """x264/x265 at the default preset (B-frames on) with moving, changing content so every frame type occurs."""
    out = av.open(str(path), "w")
    vs = out.add_stream(codec, rate=25)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = options
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for i in range(n):
        img = np.roll(base, 3 * i, axis=1) // (1 + (i // 20) % 3)
        for pkt in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
            out.mux(pkt)
    for pkt in vs.encode():
        out.mux(pkt)
    out.close()
    return path


def _all_frames(path: Path, idx: V.VideoIndex) -> dict[int, np.ndarray]:
    """Every frame, decoded plainly (no seek, no skip) and scaled by the same filter graph."""
    rank_of = {int(v): r for r, v in enumerate(idx.pts_sorted)}
    scaler = V._Scaler(V.DEFAULT_SIZE)
    out = {}
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams[idx.stream_index]):
            r = rank_of[frame.pts]
            out[r] = scaler(frame, 0)
    return out


@pytest.mark.parametrize(
    "name,options,codec",
    [
        ("default.mp4", {}, "libx264"),  # x264 default: 3 B-frames, B-pyramid
        ("pyramid.mp4", {"bframes": "3", "b-pyramid": "normal", "keyint": "40"}, "libx264"),
        ("opengop.mkv", {"bframes": "5", "b-pyramid": "none", "keyint": "250", "open-gop": "1"}, "libx264"),
        ("hevc.mp4", {"x265-params": "log-level=error:bframes=4:keyint=48"}, "libx265"),
    ],
)
@pytest.mark.parametrize("thread_type", ["AUTO", "FRAME", "SLICE"])
def test_nonref_skip_is_exact(media_dir, monkeypatch, name, options, codec, thread_type):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} encoder not available")
    path = _make_bframe_video(media_dir / name, options, codec=codec)
    idx = V.index_video(path)
    ref = _all_frames(path, idx)
    assert len(ref) == idx.vlen

    init = V._Reader.__init__

    def reader_init(self, p, stream_index, threads):
        init(self, p, stream_index, threads)
        self.stream.codec_context.thread_type = thread_type

    monkeypatch.setattr(V._Reader, "__init__", reader_init)
    rng = np.random.default_rng(0)
    targets = [
        V.sample_indices(idx, 8, "uniform"),
        sorted(rng.choice(idx.vlen, 8, replace=False).tolist()),
        [idx.vlen - 1],
        list(range(1, idx.vlen, 3)),
        [5, 6, 7, 8],
    ]
    skipped_some = False
    for wanted in targets:
        frames, _, stats = V.read_frames(path, wanted, idx, threads=2)
        plain, _, plain_stats = V.read_frames(path, wanted, idx, threads=2, skip_nonref=False)
        for k, i in enumerate(wanted):
            assert np.array_equal(frames[k], ref[i]), f"{name} {thread_type}: frame {i} differs"
        assert np.array_equal(frames, plain)
        skipped_some |= stats["decoded"] < plain_stats["decoded"]
    assert skipped_some, "the B-frame video should let the decoder drop some non-reference frames"


def test_combined_loader_equals_separate_calls(media_dir):
    path = make_video(media_dir / "av.mp4", n_frames=60, size=(96, 64), fps=10, audio_seconds=6.0)
    both = load_video_and_audio(path)
    video, audio = load_video(path), load_audio(path)
    assert both.audio_error is None and both.audio is not None
    assert np.array_equal(both.video.frames, video.frames)
    assert both.video.indices == video.indices and both.video.message == video.message
    assert np.array_equal(both.audio.tensor.numpy(), audio.tensor.numpy())
    assert both.audio.clip_bounds == audio.clip_bounds
    seq = load_video_and_audio(path, concurrent=False)
    assert np.array_equal(seq.video.frames, video.frames)
    assert np.array_equal(seq.audio.tensor.numpy(), audio.tensor.numpy())


def test_combined_loader_without_audio(media_dir):
    path = make_video(media_dir / "silent.mp4", n_frames=20, size=(64, 48))
    both = load_video_and_audio(path)
    assert both.audio is None and isinstance(both.audio_error, NoAudioError)
    assert both.video.frames.shape == (8, 224, 224, 3)


def _fixture_videos() -> list:
    import json
    import os

    default = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "media"
    root = Path(os.environ.get("VIDEOLLAMA_MEDIA_FIXTURES", default))
    params = []
    for manifest in sorted(root.rglob("manifest.json")) if root.is_dir() else []:
        for key, item in json.loads(manifest.read_text()).get("items", {}).items():
            if isinstance(item.get("video"), dict) and "frame_indices" in item["video"]:
                params.append(pytest.param(manifest.parent / item["media_file"], id=f"{manifest.parent.name}/{key}"))
    return params or [pytest.param(None, marks=pytest.mark.skip(reason="no media fixtures"), id="no-fixtures")]


@pytest.mark.parametrize("path", _fixture_videos())
def test_combined_loader_on_fixture_videos(path):
    """Threaded combined load == the two separate calls, and NONREF skipping == plain decode, on real files."""
    both = load_video_and_audio(path)
    video = load_video(path)
    assert np.array_equal(both.video.frames, video.frames) and both.video.indices == video.indices
    plain, _, _ = V.read_frames(path, video.indices, skip_nonref=False)
    assert np.array_equal(plain, video.frames)
    try:
        audio = load_audio(path)
    except NoAudioError:
        assert both.audio is None and isinstance(both.audio_error, NoAudioError)
        return
    assert both.audio is not None
    assert np.array_equal(both.audio.tensor.numpy(), audio.tensor.numpy())
