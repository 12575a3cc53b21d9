"""Bad and unusual input: every case gives a correct result or one clear MediaError naming the file."""

from __future__ import annotations

import os
import resource

import av
import numpy as np
import pytest
from PIL import Image

from tests.media.conftest import make_audio, make_video, pattern
from videollama.errors import CorruptMediaError, MediaError, MediaNotFoundError, NoAudioError, UnsupportedMediaError
from videollama.media import load_audio, load_image, load_video, probe

LOADERS = [load_video, load_audio, load_image, probe]


def _one_line_naming(exc: BaseException, path) -> None:
    msg = str(exc)
    assert str(path) in msg, msg
    assert "\n" not in msg, msg


@pytest.mark.parametrize("loader", LOADERS, ids=lambda f: f.__name__)
def test_missing_file(media_dir, loader):
    path = media_dir / "nope.mp4"
    with pytest.raises(MediaNotFoundError) as info:
        loader(path)
    _one_line_naming(info.value, path)


@pytest.mark.parametrize("loader", LOADERS, ids=lambda f: f.__name__)
def test_empty_file(media_dir, loader):
    path = media_dir / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(CorruptMediaError) as info:
        loader(path)
    _one_line_naming(info.value, path)


@pytest.mark.parametrize("loader", LOADERS, ids=lambda f: f.__name__)
def test_text_file_named_mp4(media_dir, loader):
    path = media_dir / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(UnsupportedMediaError) as info:
        loader(path)
    _one_line_naming(info.value, path)


def test_directory_is_not_media(media_dir):
    with pytest.raises(MediaNotFoundError):
        load_video(media_dir)


def test_truncated_mp4(media_dir):
    good = make_video(media_dir / "good.mp4", n_frames=40)
    data = good.read_bytes()
    path = media_dir / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])  # moov atom (at the end) is lost
    for loader in (load_video, load_audio, probe):
        with pytest.raises(CorruptMediaError) as info:
            loader(path)
        _one_line_naming(info.value, path)


def test_truncated_mkv_gives_result_or_clear_error(media_dir):
    good = make_video(media_dir / "good.mkv", n_frames=60, gop=10)
    data = good.read_bytes()
    path = media_dir / "cut.mkv"
    path.write_bytes(data[: int(len(data) * 0.6)])
    try:
        clip = load_video(path)
    except MediaError as exc:
        _one_line_naming(exc, path)
    else:
        assert clip.frames.shape[1:] == (224, 224, 3) and clip.vlen < 60


def test_corrupt_packets_in_the_middle(media_dir):
    good = make_video(media_dir / "good.mkv", n_frames=60, gop=10)
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    mid = len(data) // 2
    data[mid : mid + 400] = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
    path = media_dir / "garbled.mkv"
    path.write_bytes(bytes(data))
    try:
        clip = load_video(path)
    except MediaError as exc:
        _one_line_naming(exc, path)
    else:
        assert clip.frames.shape[0] == len(clip.indices)


def test_video_without_audio(media_dir):
    path = make_video(media_dir / "silent.mp4", n_frames=20)
    clip = load_video(path)
    assert clip.frames.shape == (8, 224, 224, 3)
    with pytest.raises(NoAudioError) as info:
        load_audio(path)
    _one_line_naming(info.value, path)
    assert "no audio stream" in str(info.value)
    assert probe(path).has_audio is False


def test_video_with_audio(media_dir):
    path = make_video(media_dir / "av.mp4", n_frames=50, fps=10, audio_seconds=5.0)
    clip = load_video(path)
    assert clip.vlen == 50 and clip.indices == [0, 6, 12, 18, 25, 31, 37, 43]
    audio = load_audio(path)
    assert audio.tensor.shape == (1, 8, 1, 128, 204)
    assert audio.channels == 2 and audio.native_sample_rate == 44100
    assert np.isfinite(audio.tensor.numpy()).all()
    info = probe(path)
    assert info.has_audio and info.frame_count == 50 and info.fps == 10.0


@pytest.mark.parametrize("ext", [".wav", ".flac", ".mp3", ".m4a", ".ogg"])
def test_audio_only_files(media_dir, ext):
    rate = 48000 if ext == ".ogg" else 44100
    path = make_audio(media_dir / f"tone{ext}", seconds=3.0, rate=rate)
    audio = load_audio(path)
    assert audio.tensor.shape == (1, 8, 1, 128, 204)
    assert abs(audio.duration_s - 3.0) < 0.1
    with pytest.raises(UnsupportedMediaError) as info:
        load_video(path)
    _one_line_naming(info.value, path)
    assert probe(path).kind == "audio"


def test_audio_shorter_than_one_window(media_dir):
    path = make_audio(media_dir / "blip.wav", seconds=0.02, rate=16000)  # 20 ms < 25 ms
    with pytest.raises(NoAudioError) as info:
        load_audio(path)
    _one_line_naming(info.value, path)


def test_five_channel_layout_uses_channel_zero(media_dir):
    path = make_audio(media_dir / "surround.wav", seconds=2.5, rate=16000, layout="5.1")
    audio = load_audio(path)
    assert audio.channels == 6 and audio.tensor.shape == (1, 8, 1, 128, 204)


def test_zero_frame_video(media_dir):
    path = media_dir / "zero.mp4"
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=10)
    vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    out.close()
    with pytest.raises(MediaError) as info:
        load_video(path)
    _one_line_naming(info.value, path)


def test_fewer_frames_than_requested(media_dir):
    path = make_video(media_dir / "five.mp4", n_frames=5)
    clip = load_video(path, n_frames=8)
    assert clip.vlen == 5 and clip.indices == [0, 1, 2, 3, 4]
    assert clip.frames.shape == (5, 224, 224, 3) and clip.tensor.shape == (1, 3, 5, 224, 224)
    assert clip.message.startswith("The video contains 5 frames sampled at 0.0, 0.1, 0.2, 0.3, 0.4 seconds. ")


def test_many_frames_and_frame_identity(media_dir):
    path = make_video(media_dir / "many.mp4", n_frames=130, gop=12)
    clip = load_video(path, n_frames=64)
    assert clip.frames.shape[0] == 64
    # every sampled frame is the right one: its brightness encodes its number
    for i, frame in zip(clip.indices, clip.frames):
        assert abs(int(frame[112, 200, 0]) - (i * 7) % 200) <= 3, i
    every = load_video(path, n_frames=None, sampling="fps", fps=10.0)
    assert every.indices == list(range(130))


def test_variable_frame_rate(media_dir):
    pts = [0, 40, 80, 200, 500, 520, 540, 1500, 1600, 2000]
    path = make_video(media_dir / "vfr.mkv", n_frames=len(pts), pts=pts)
    clip = load_video(path, n_frames=4)
    assert clip.vlen == len(pts)
    assert clip.indices == [0, 2, 5, 7]
    assert clip.pts_seconds == pytest.approx([0.0, 0.08, 0.52, 1.5], abs=1e-3)
    for i, frame in zip(clip.indices, clip.frames):
        assert abs(int(frame[112, 200, 0]) - (i * 7) % 200) <= 3
    by_time = load_video(path, n_frames=None, sampling="fps", fps=1.0)  # frames on screen at t = 0, 1, 2 s
    assert by_time.indices == [0, 6, 9]
    window = load_video(path, n_frames=8, sampling="range", start_s=0.5, end_s=1.6)
    assert window.indices == [4, 5, 6, 7]


@pytest.mark.parametrize("ccw,cw", [(90, 270), (-90, 90), (180, 180)])
def test_rotated_video(media_dir, ccw, cw):
    path = make_video(media_dir / f"rot{cw}.mp4", n_frames=6, size=(64, 32), rotation=ccw)
    info = probe(path)
    assert info.rotation == cw
    clip = load_video(path, n_frames=1)
    assert clip.rotation == cw
    f = clip.frames[0, :, :, 0].astype(int)
    # The white band is the left quarter of the stored frame; after the rotation it sits elsewhere.
    band = {270: f[-30:, :].mean() - f[:30, :].mean(),  # ccw: left edge -> bottom
            90: f[:30, :].mean() - f[-30:, :].mean(),  # cw: left edge -> top
            180: f[:, -30:].mean() - f[:, :30].mean()}[cw]  # left -> right
    assert band > 100


def test_large_frames_bounded_memory(media_dir):
    path = make_video(media_dir / "big.mp4", n_frames=3, size=(3840, 2160), fps=2,
                      frame_fn=lambda i, h, w: np.full((h, w, 3), 40 * i, np.uint8))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    clip = load_video(path, n_frames=8)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert clip.frames.shape == (3, 224, 224, 3)
    assert grown_mib < 400, f"peak RSS grew by {grown_mib:.0f} MiB"


def test_long_video_is_not_fully_decoded(media_dir):
    n = 3600  # one hour at 1 fps, tiny frames, keyframe every minute
    path = make_video(media_dir / "hour.mp4", n_frames=n, size=(32, 32), fps=1, gop=60)
    clip = load_video(path, n_frames=8)
    assert clip.vlen == n and clip.indices == [k * 450 for k in range(8)]
    assert clip.decoded_frames <= 8 * 60 + 16, clip.decoded_frames  # at most one GOP per sampled frame
    assert clip.seeks >= 7
    for i, frame in zip(clip.indices, clip.frames):
        assert abs(int(frame[100, 200, 0]) - (i * 7) % 200) <= 3


def test_image_as_video_is_refused(media_dir):
    path = media_dir / "still.png"
    Image.fromarray(pattern(0, 40, 60)).save(path)
    with pytest.raises(UnsupportedMediaError):
        load_video(path)
    assert probe(path).kind == "image"


def test_text_file_named_jpg(media_dir):
    path = media_dir / "fake.jpg"
    path.write_text("hello")
    with pytest.raises(UnsupportedMediaError) as info:
        load_image(path)
    _one_line_naming(info.value, path)


def test_truncated_jpeg(media_dir):
    path = media_dir / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptMediaError) as info:
        load_image(path)
    _one_line_naming(info.value, path)
