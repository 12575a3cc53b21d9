"""The engine on the real data layer (videollama.training.data): jsonl images -> pixels -> loss; resume is exact."""

from __future__ import annotations

import json

import pytest

from tests.training.conftest import max_diff, recipe

pytest.importorskip("videollama.training.data")


@pytest.fixture(scope="module")
def jsonl_data(tmp_path_factory):
    from tests.training_data.conftest import make_image

    root = tmp_path_factory.mktemp("jsonl")
    lines = []
    for i in range(4):
        make_image(root / f"media/{i}.png", seed=i)
        lines.append(json.dumps({"media": f"media/{i}.png", "caption": f"a square moving in the video number {i}"}))
    lines.append(json.dumps({"media": "media/missing.png", "caption": "skipped"}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_engine_on_data_layer_and_exact_resume(tiny_model, jsonl_data, tmp_path):
    from videollama.training.engine import train

    data = (f"datasets=[{{name: imgs, format: jsonl, annotations: {jsonl_data / 'train.jsonl'}, "
            f"media_root: {jsonl_data}, n_frames: 1}}]")
    ref = train(recipe(tiny_model, tmp_path / "ref", data), resume=False, progress=False, export=False)
    assert ref.steps == 8 and all(x == x for x in ref.losses)
    part = train(recipe(tiny_model, tmp_path / "run", data), resume=False, progress=False, export=False, max_steps=3)
    assert part.steps == 3
    rest = train(recipe(tiny_model, tmp_path / "run", data), resume=True, progress=False, export=False)
    assert rest.resumed_from.endswith("step-00000003") and rest.steps == 8
    from tests.training.conftest import final_trainable

    assert max_diff(final_trainable(tmp_path / "ref"), final_trainable(tmp_path / "run")) <= 1e-6
    assert rest.losses == pytest.approx(ref.losses[3:], abs=1e-6)
