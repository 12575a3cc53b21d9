"""Every shipped recipe runs end to end (a few steps) on tiny generated data in the official formats.

The recipes are copied next to a generated `data/` tree laid out exactly as their relative paths expect
(WebVid CSVs + page_dir/videoid.mp4, filter_cap.json + image/{id}.jpg, LLaVA-Instruct JSON with the
COCO_train2014_ prefix, VideoChat-Instruct JSON), then trained with only the model, sizes and steps overridden.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.training.conftest import REPO
from tests.training_data.conftest import make_image, make_video
from videollama.training.recipe import TrainRecipe

RECIPES = sorted(p.name for p in (REPO / "recipes").glob("*_stage*_*.yaml"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recipes-e2e")
    shutil.copytree(REPO / "recipes", root / "recipes")
    data = root / "data"
    # WebVid: anno/*.csv (videoid,page_dir,name) and videos/{page_dir}/{videoid}.mp4
    (data / "webvid/anno").mkdir(parents=True)
    with open(data / "webvid/anno/part0.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["videoid", "page_dir", "name"])
        for i in range(4):
            make_video(data / f"webvid/videos/000001_000050/{1000 + i}.mp4", n_frames=12, seed=i)
            writer.writerow([1000 + i, "000001_000050", f"A shape moves across the screen, clip {i}."])
    # Image captions (LLaVA-CC3M converted, and MiniGPT-4 cc_sbu_align): filter_cap.json + image/{image_id}.jpg
    for name in ("llava_cc3m", "cc_sbu_align"):
        anns = []
        for i in range(4):
            make_image(data / f"{name}/image/GCC_train_{i:09d}.jpg", seed=10 + i)
            anns.append({"image_id": f"GCC_train_{i:09d}", "caption": f"a colourful noise pattern number {i}"})
        (data / f"{name}/filter_cap.json").write_text(json.dumps({"annotations": anns}))
    # LLaVA-Instruct-150K: COCO images with the official prefix
    convs = []
    for i in range(4):
        make_image(data / f"coco/train2014/COCO_train2014_{i:012d}.jpg", seed=20 + i)
        convs.append({"id": f"{i:012d}", "image": f"{i:012d}.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is in the picture?"}, {"from": "gpt", "value": "Noise."},
            {"from": "human", "value": "Which colour dominates?"}, {"from": "gpt", "value": "None of them."}]})
    (data / "llava_instruct").mkdir(parents=True, exist_ok=True)
    (data / "llava_instruct/llava_instruct_150k.json").write_text(json.dumps(convs))
    # VideoChat-Instruct-11K
    items = []
    for i in range(4):
        make_video(data / f"videochat_instruct/videos/v{i}.mp4", n_frames=12, seed=30 + i)
        items.append({"video": f"v{i}.mp4", "QA": [{"q": "What happens?", "a": "Something moves."},
                                                     {"q": "Is it fast?", "a": "No."}]})
    (data / "videochat_instruct").mkdir(parents=True, exist_ok=True)
    (data / "videochat_instruct/videochat_instruct_11k.json").write_text(json.dumps(items))
    return root


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_end_to_end(name, workspace, tiny_model, tmp_path) -> None:
    from videollama.training.engine import train

    overrides = [f"model={tiny_model}", f"output_dir={tmp_path / 'run'}", "optim.batch_size=2",
                 "optim.iters_per_epoch=2", "optim.max_epoch=1", "optim.warmup_steps=1", "precision=fp32",
                 "num_workers=0", "log_with=[]", "init_llama_proj=null"]
    recipe = TrainRecipe.from_yaml(workspace / "recipes" / name, overrides)
    for spec in recipe.datasets:  # every annotation file the recipe names was generated in its official format
        assert Path(spec.annotations).exists(), spec.annotations
    result = train(recipe, resume=False, progress=False, export=True)
    assert result.steps == 2 and all(loss == loss for loss in result.losses)  # no NaN
    final = tmp_path / "run" / "final"
    assert (final / "config.json").exists() and (final / f"videollama_{recipe.branch}.pth").exists()
