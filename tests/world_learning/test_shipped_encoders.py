"""The tiny preset's shipped pretrained encoders (recipes/world/world_encoders.safetensors): they fit the learning-
proof model, replace exactly its frozen encoders, and carry the world (a probe reads far more from them than from
the seeded random ones); a file that does not fit is a one-line error; the benchmark's options pick them."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch

from tests.world_learning.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import world_learning as W  # noqa: E402


def test_shipped_encoders_replace_the_frozen_encoders_and_read_the_world(world_model, tmp_path) -> None:
    from videollama.model.videollama import VideoLLaMA
    from videollama.world.audio_pretraining import AudioPretrainOptions, pretrain_audio
    from videollama.world.vision_pretraining import VisionPretrainOptions, pretrain_vision

    folder = shutil.copytree(world_model, tmp_path / "model")
    prov = W.load_world_encoders(folder, W.SHIPPED_ENCODERS["tiny"])
    assert prov["modules"] == list(W.ENCODER_MODULES) and prov["vision_pretraining"]["options"]["steps"] > 0
    before, after = VideoLLaMA.from_pretrained(world_model).state_dict(), VideoLLaMA.from_pretrained(folder).state_dict()
    assert {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])} == set(W.ENCODER_MODULES)

    # probes: only the read-out heads train, on the random stack and on the shipped one
    vopts = VisionPretrainOptions(steps=60, batch_size=16, lr=3e-3, warmup_steps=5, scenes_per_block=64,
                                  train_vit=False, train_image_qformer=False)
    aopts = AudioPretrainOptions(steps=40, batch_size=32, lr=3e-3, warmup_steps=5, scenes_per_block=16,
                                 train_encoder=False)
    acc = {}
    for name, path in (("random", world_model), ("shipped", folder)):
        model = VideoLLaMA.from_pretrained(path)
        acc[name] = {**pretrain_vision(model, vopts, progress=False, eval_frames=48)["accuracy"],
                     **pretrain_audio(model, aopts, progress=False, eval_clips=96)["accuracy"]}
    shipped, random = acc["shipped"], acc["random"]
    # 60 / 40 probe steps (measured: shape of object patches 84 % against 18, count 100 against 52, pitch and
    # timbre 100 against 0); the frame-level slot read-out needs more probe steps than a test affords
    assert shipped["shape_objects"] > random["shape_objects"] + 40, acc
    assert shipped["count"] > random["count"] + 25, acc
    assert shipped["pitch"] > random["pitch"] + 50 and shipped["timbre"] > random["timbre"] + 50, acc


def test_encoders_that_do_not_fit_are_a_one_line_error(world_model, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(W.SHIPPED_ENCODERS["tiny"]))
    key = next(k for k in tensors if k.startswith("vision."))
    save_file({k: v for k, v in tensors.items() if k != key}, str(tmp_path / "partial.safetensors"))
    folder = shutil.copytree(world_model, tmp_path / "model")
    with pytest.raises(SystemExit, match=r"partial\.safetensors: the shipped encoders do not fit .*1 keys differ"):
        W.load_world_encoders(folder, tmp_path / "partial.safetensors")
    with pytest.raises(SystemExit, match="shipped encoders not found"):
        W.load_world_encoders(folder, tmp_path / "absent.safetensors")


@pytest.mark.parametrize("argv, message", [(["--encoders", "shipped", "--vision-steps", "5"], "need --encoders pretrain"),
                                           (["--encoders", "shipped", "--save-encoders", "x.safetensors"],
                                            "need --encoders pretrain"),
                                           (["--encoders", "pretrain", "--encoders-base", "x.safetensors"],
                                            "--encoders-base needs --encoders continue"),
                                           (["--cache-views", "-1"], "--cache-views must be >= 0"),
                                           (["--encoders", "continue", "--vision-continue", "colour=1"],
                                            "--vision-continue: unknown key 'colour' in VisionPretrainOptions"),
                                           (["--encoders", "continue", "--vision-continue", "seed=two"],
                                            "--vision-continue.seed: expected an integer, got 'two'"),
                                           (["--encoders", "continue", "--vision-continue", "train_vit=3"],
                                            "--vision-continue.train_vit: expected true or false, got 3"),
                                           (["--encoders", "continue", "--vision-continue", "lr"],
                                            "override 'lr' must look like key=value"),
                                           (["--encoders", "continue", "--vision-continue", "steps=5"],
                                            "--vision-continue: steps cannot be set here (steps: --vision-steps)"),
                                           (["--vision-continue", "seed=2"], "--vision-continue needs --encoders continue")])
def test_contradicting_or_bad_encoder_and_cache_options_are_refused(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        W.main(["--train", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_saved_encoders_load_back_with_their_provenance(world_model, tmp_path) -> None:
    """--save-encoders writes what --encoders shipped reads: same tensors, provenance kept."""
    from videollama.model.videollama import VideoLLaMA

    source = shutil.copytree(world_model, tmp_path / "source")
    W.load_world_encoders(source, W.SHIPPED_ENCODERS["tiny"])  # anything other than the random init
    W.save_world_encoders(source, tmp_path / "enc.safetensors", {"command": "test", "model_seed": 0})
    target = shutil.copytree(world_model, tmp_path / "target")
    prov = W.load_world_encoders(target, tmp_path / "enc.safetensors")
    assert prov["command"] == "test" and prov["modules"] == list(W.ENCODER_MODULES) and prov["torch"]
    a, b = VideoLLaMA.from_pretrained(source).state_dict(), VideoLLaMA.from_pretrained(target).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / ".enc.safetensors.tmp").exists()


def test_continued_pretraining_starts_from_the_shipped_encoders(world_model, tmp_path) -> None:
    """--encoders continue: the shipped encoders are loaded, then pretrained further with VISION_CONTINUE's and
    AUDIO_CONTINUE's options on frames and sounds of seed model_seed + 1; while only the fresh heads learn (the
    first heads_only_steps), the image stack stays exactly the shipped one, and the audio encoder moves."""
    from safetensors.torch import load_file

    from videollama.model.videollama import VideoLLaMA

    folder = shutil.copytree(world_model, tmp_path / "model")
    W.load_world_encoders(folder, W.SHIPPED_ENCODERS["tiny"])
    steps = 2
    assert steps <= W.VISION_CONTINUE["heads_only_steps"]
    override = {"token_slot_weight": 1.0, "token_slot_mean_only": True}  # what --vision-continue passes
    info = W.pretrain_world_encoders(folder, steps, steps, 0, None, continue_training=True, vision_continue=override)
    opts, audio = info["vision_pretraining"]["options"], info["audio_pretraining"]["options"]
    assert opts["continue_training"] and opts["seed"] == 1 and opts["steps"] == steps
    expected = {**{k: v for k, v in W.VISION_CONTINUE.items() if k != "steps"}, **override}
    assert {k: opts[k] for k in expected} == expected
    assert "mean_token_shape" in info["vision_pretraining"]["accuracy"]  # the overridden read-out ran
    assert audio["seed"] == 1 and audio["steps"] == steps and audio["lr"] == W.AUDIO_CONTINUE["lr"]
    shipped, state = load_file(str(W.SHIPPED_ENCODERS["tiny"])), VideoLLaMA.from_pretrained(folder).state_dict()
    image_stack = [k for k in shipped if not k.startswith("audio_encoder.")]
    assert image_stack and all(torch.equal(state[k], shipped[k]) for k in image_stack)
    assert any(not torch.equal(state[k], v) for k, v in shipped.items() if k.startswith("audio_encoder."))


def test_encoders_are_taken_from_a_default_model_adapters_file(world_model, tmp_path) -> None:
    """The smol preset's shipped encoders live inside the default model's adapters.safetensors: only the encoder
    tensors are loaded (the Q-Formers, projections and LoRA beside them are not), and their pretraining figures come
    from the provenance.json beside the file. A file missing an encoder tensor is still refused."""
    import json

    from safetensors.torch import load_file, save_file

    from videollama.default_model import ADAPTERS_FORMAT, ADAPTERS_FORMAT_VERSION
    from videollama.model.videollama import VideoLLaMA

    shipped = load_file(str(W.SHIPPED_ENCODERS["tiny"]))
    folder = shutil.copytree(world_model, tmp_path / "model")
    proj = VideoLLaMA.from_pretrained(folder).state_dict()["video_proj.weight"]
    extra = {"video_proj.weight": torch.full_like(proj, 7.0),  # fits the model, must still not be loaded
             "lora.model.layers.0.self_attn.q_proj.lora_A": torch.ones(2, 2)}
    adapters = tmp_path / "adapters.safetensors"
    save_file({**shipped, **extra}, str(adapters))
    prov_beside = {"format": ADAPTERS_FORMAT, "format_version": ADAPTERS_FORMAT_VERSION, "seed": 0,
                   "vision_pretraining": {"steps": 7}}
    (tmp_path / "provenance.json").write_text(json.dumps(prov_beside))
    prov = W.load_world_encoders(folder, adapters)
    assert prov == {"vision_pretraining": {"steps": 7}}
    state = VideoLLaMA.from_pretrained(folder).state_dict()
    assert all(torch.equal(state[k], v) for k, v in shipped.items())
    assert torch.equal(state["video_proj.weight"], proj)
    some = next(iter(shipped))
    save_file({k: v for k, v in {**shipped, **extra}.items() if k != some}, str(adapters))
    with pytest.raises(SystemExit, match="the shipped encoders do not fit"):
        W.load_world_encoders(folder, adapters)


def test_smol_preset_ships_its_encoders_inside_the_default_adapters() -> None:
    """`--preset smol` defaults to `--encoders shipped`: the default model's adapters file holds every encoder."""
    from safetensors import safe_open

    path = W.SHIPPED_ENCODERS["smol"]
    with safe_open(str(path), framework="pt") as f:
        prefixes = {k.split(".")[0] for k in f.keys()}
    assert set(W.ENCODER_MODULES) <= prefixes


@pytest.mark.parametrize("encoders", ["shipped", "continue"])
def test_a_preset_without_shipped_encoders_refuses_to_load_them(encoders, monkeypatch, capsys) -> None:
    """Without a shipped encoders file for the preset (and no --encoders-base), --encoders shipped/continue is a
    usage error, not a run."""
    monkeypatch.setitem(W.SHIPPED_ENCODERS, "smol", None)
    with pytest.raises(SystemExit) as exc:
        W.main(["--train", "--preset", "smol", "--encoders", encoders])
    assert exc.value.code == 2 and "has no shipped encoders" in capsys.readouterr().err


def test_a_motion_probe_world_that_is_not_a_world_is_refused_before_anything_runs(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        W.main(["--model", str(tmp_path), "--heldout", str(tmp_path), "--motion-probe", str(tmp_path / "nowhere")])
    assert exc.value.code == 2 and "nowhere: not a generated world (no videos/ folder)" in capsys.readouterr().err
