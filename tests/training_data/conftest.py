"""Tiny generated training data in every format + a tiny model/tokenizer (session scoped: built once)."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from videollama.training.recipe import DatasetSpec, OptimConfig, TrainRecipe


def make_video(path: Path, n_frames: int = 12, size=(40, 32), fps: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height = size
    vs.pix_fmt = "yuv420p"
    vs.options = {"preset": "ultrafast"}
    base = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    for i in range(n_frames):
        arr = np.roll(base, i * 3, axis=1)
        for p in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()
    return path


def make_image(path: Path, size=(50, 40), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x01garbage, not a media file" * 10)
    return path


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_700_000_000
    tf.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from videollama.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("td-tiny") / "model", "tiny", seed=0)


@pytest.fixture(scope="session")
def tokenizer(tiny_model):
    from videollama.text import load_tokenizer

    return load_tokenizer(tiny_model / "llm")


@pytest.fixture(scope="session")
def model_config(tiny_model):
    from videollama.checkpoint.folder import read_config

    return read_config(tiny_model)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """Every format, each with good records and one missing, one corrupt and one malformed record."""
    root = tmp_path_factory.mktemp("td-data")
    # --- webvid: anno/*.csv, videos/{page_dir}/{videoid}.mp4
    for k in range(4):
        make_video(root / "webvid/videos/000001_000050" / f"{100 + k}.mp4", n_frames=12 + k, seed=k)
    corrupt(root / "webvid/videos/000001_000050/198.mp4")
    make_video(root / "webvid/videos/000001_000050/197.mp4", n_frames=3, seed=9)  # too short for 8 frames
    (root / "webvid/anno").mkdir(parents=True)
    with open(root / "webvid/anno/part0.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["videoid", "page_dir", "name", "duration"])
        for k in range(4):
            w.writerow([100 + k, "000001_000050", f"  A Dog (running) in the PARK #{k}!  ", "PT00H00M10S"])
        w.writerow([199, "000001_000050", "missing video", "x"])
        w.writerow([198, "000001_000050", "corrupt video", "x"])
        w.writerow([197, "000001_000050", "short video", "x"])
        w.writerow([196, "000001_000050", "   ", "x"])  # empty caption -> malformed
    # --- cc_sbu_align: filter_cap.json + image/{id}.jpg
    cc = root / "cc_sbu"
    for k in range(3):
        make_image(cc / "image" / f"img{k}.jpg", seed=10 + k)
    corrupt(cc / "image/bad.jpg")
    ann = [{"image_id": f"img{k}", "caption": f"A Raw Caption. Number {k}!"} for k in range(3)]
    ann += [{"image_id": "gone", "caption": "missing"}, {"image_id": "bad", "caption": "corrupt"},
            {"image_id": "img0"}]  # last: no caption -> malformed
    (cc / "filter_cap.json").write_text(json.dumps({"annotations": ann}, indent=1))
    (cc / "prompts.txt").write_text("<Image><ImageHere></Image> Describe this image in detail.\nno placeholder\n"
                                    "<Image><ImageHere></Image> Take a look at this image and describe what you notice.\n")
    # --- llava_instruct: json list; images COCO_train2014_{image}
    ll = root / "llava"
    for k in range(3):
        make_image(ll / "images" / f"COCO_train2014_{k:012d}.jpg", seed=20 + k)
    corrupt(ll / "images/COCO_train2014_bad.jpg")

    def conv(q, a):
        return [{"from": "human", "value": q}, {"from": "gpt", "value": a}]

    items = [{"id": str(k), "image": f"{k:012d}.jpg",
              "conversations": conv("<image>\nWhat is in the picture?", "A boat on the water.")
              + conv("Which colour?", "Red.")} for k in range(3)]
    items += [{"id": "m", "image": "gone.jpg", "conversations": conv("<image>\nQ?", "A.")},
              {"id": "c", "image": "bad.jpg", "conversations": conv("<image>\nQ?", "A.")},
              {"id": "x", "image": "000000000000.jpg",
               "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "human", "value": "again"}]}]
    (ll / "llava_instruct_150k.json").write_text(json.dumps(items, indent=2))
    # --- videochat_instruct: json list; videos media_root/{video}
    vc = root / "videochat"
    for k in range(3):
        make_video(vc / "videos" / f"v{k}.mp4", n_frames=10 + 2 * k, seed=30 + k)
    corrupt(vc / "videos/bad.mp4")
    qa = [{"q": "What happens?", "a": "A square moves."}, {"q": "Which way?", "a": "Left to right."}]
    items = [{"video": f"v{k}.mp4", "QA": qa, "caption": "ignored"} for k in range(3)]
    items += [{"video": "gone.mp4", "QA": qa}, {"video": "bad.mp4", "QA": qa}, {"video": "v0.mp4", "QA": []}]
    (vc / "videochat_instruct_11k.json").write_text(json.dumps(items, indent=1))
    # --- jsonl (captions, mixed image/video) + a bad JSON line
    jl = root / "jsonl"
    make_video(jl / "media/a.mp4", n_frames=9, seed=40)
    make_image(jl / "media/b.png", seed=41)
    make_image(jl / "media/c.webp", seed=42)
    lines = [json.dumps({"media": "media/b.png", "caption": "an image"}),
             json.dumps({"media": "media/c.webp", "caption": "another image"}),
             json.dumps({"media": "media/gone.png", "caption": "missing"}),
             '{"media": "media/b.png", "caption": ',  # bad JSON
             json.dumps({"media": "media/b.png"}),  # no text
             json.dumps({"media": "media/a.mp4", "caption": "a video"})]  # a video in an image dataset
    (jl / "train.jsonl").write_text("\n".join(lines) + "\n")
    # --- jsonl conversations (instruct task)
    (jl / "conv").mkdir()
    lines = [json.dumps({"media": "media/a.mp4", "conversations": conv("Describe the video.", "Moving noise.")}),
             json.dumps({"media": "media/b.png", "conversations": conv("<image>\nWhat is it?", "Noise.")})]
    (jl / "conv/train.jsonl").write_text("\n".join(lines) + "\n")
    # --- webdataset shards
    wd = root / "wds"
    wd.mkdir()
    tmpv = make_video(root / "tmp/w.mp4", n_frames=10, seed=50)
    tmpi = make_image(root / "tmp/w.jpg", seed=51)
    with tarfile.open(wd / "shard-000000.tar", "w") as tf:
        _add(tf, "s0.jpg", tmpi.read_bytes())
        _add(tf, "s0.json", json.dumps({"caption": "a tar image"}).encode())
        _add(tf, "s1.jpg", tmpi.read_bytes())
        _add(tf, "s1.json", json.dumps({"caption": "a tar image"}).encode())
    with tarfile.open(wd / "shard-000001.tar", "w") as tf:
        _add(tf, "s2.jpg", tmpi.read_bytes())
        _add(tf, "s2.json", json.dumps({"caption": "another tar image"}).encode())
        _add(tf, "s3.jpg", b"corrupt bytes, not a jpeg")
        _add(tf, "s3.json", json.dumps({"caption": "corrupt"}).encode())
        _add(tf, "s4.json", json.dumps({"caption": "no media"}).encode())
    (root / "wds_video").mkdir()
    with tarfile.open(root / "wds_video/v-000000.tar", "w") as tf:
        _add(tf, "clips/v0.mp4", tmpv.read_bytes())
        _add(tf, "clips/v0.json", json.dumps({"conversations": [
            {"from": "human", "value": "What moves?"}, {"from": "gpt", "value": "Noise."}]}).encode())
    return root


def spec_for(root: Path, fmt: str, **kw) -> DatasetSpec:
    table = {
        "webvid": dict(annotations=str(root / "webvid/anno"), media_root=str(root / "webvid/videos"),
                       sampling="headtail"),
        "cc_sbu_align": dict(annotations=str(root / "cc_sbu/filter_cap.json"), media_root=str(root / "cc_sbu/image")),
        "llava_instruct": dict(annotations=str(root / "llava/llava_instruct_150k.json"),
                               media_root=str(root / "llava/images"), image_path_prefix="COCO_train2014_"),
        "videochat_instruct": dict(annotations=str(root / "videochat/videochat_instruct_11k.json"),
                                   media_root=str(root / "videochat/videos")),
        "jsonl": dict(annotations=str(root / "jsonl/train.jsonl"), media_root=str(root / "jsonl")),
        "webdataset": dict(annotations=str(root / "wds"), media_root=str(root / "wds")),
    }
    return DatasetSpec(name=kw.pop("name", fmt), format=fmt, **{**table[fmt], **kw})


def recipe_for(specs, branch="vl", template="llama_2", batch_size=2, seed=42, **kw) -> TrainRecipe:
    return TrainRecipe(name="t", model="unused", branch=branch, template=template, datasets=tuple(specs),
                       optim=replace(OptimConfig(), batch_size=batch_size), seed=seed, num_workers=0, **kw)
