"""The engine on a tiny model, in process: learning, freezing, checkpoints, export, LoRA."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.training.conftest import recipe
from tests.training.synthetic import make_batches
from videollama.training import checkpointing as ckpt
from videollama.training.engine import train
from videollama.training.objective import TRAINABLE_MODULES


def test_loss_falls_on_overfit_set(expressive_model, tmp_path, capsys):
    r = recipe(expressive_model, tmp_path / "run", "optim.init_lr=1.0e-2", "optim.min_lr=1.0e-3", "optim.iters_per_epoch=12",
               "optim.warmup_steps=2", "save_every_steps=0", "keep_last=1")
    res = train(r, data_factory=make_batches, resume=False, progress=False, export=False)
    assert "trainable parameters: 29,360" in capsys.readouterr().out
    assert res.steps == 24
    first, last = sum(res.losses[:4]) / 4, sum(res.losses[-4:]) / 4
    assert last < first - 0.5, res.losses


@pytest.mark.parametrize("branch", ["vl", "al"])
def test_frozen_bit_identical_and_checkpoint_contents(tiny_model, tmp_path, branch):
    from videollama.model.videollama import VideoLLaMA

    out = tmp_path / "run"
    res = train(recipe(tiny_model, out, f"branch={branch}"), data_factory=make_batches, resume=False, progress=False)
    base = VideoLLaMA.from_pretrained(tiny_model)
    before = dict(base.named_parameters())
    changed = set()
    for name, p in res.model.named_parameters():
        if p.requires_grad:
            changed.add(name) if not torch.equal(p.detach(), before[name]) else None
        else:
            assert torch.equal(p, before[name]), f"frozen {name} changed"
    assert {n.split(".")[0] for n in changed} == set(TRAINABLE_MODULES[branch])
    # checkpoints: trainable parameters only, last 2 kept (save every 2 steps, 8 steps)
    ckpts = ckpt.list_checkpoints(out)
    assert [c.name for c in ckpts] == ["step-00000006", "step-00000008"]
    state = load_file(str(ckpts[-1] / ckpt.TRAINABLE_FILE))
    trainable = {n for n, p in res.model.named_parameters() if p.requires_grad}
    assert set(state) == trainable and all(k.split(".")[0] in TRAINABLE_MODULES[branch] for k in state)
    assert all(torch.equal(state[n], dict(res.model.named_parameters())[n]) for n in state)
    resume = ckpt.load_resume(ckpts[-1])
    assert resume["step"] == 8 and resume["world_size"] == 1 and resume["data"] == [{"step": 8}]
    assert set(resume) >= {"optimizer", "scheduler", "rng", "epoch"}
    meta = json.loads((ckpts[-1] / ckpt.META_FILE).read_text())
    assert meta["num_trainable"] == res.trainable_params
    # final export: a loadable folder with the trained weights + the official .pth of the branch
    final = VideoLLaMA.from_pretrained(out / "final")
    for n in trainable:
        assert torch.equal(dict(final.named_parameters())[n], state[n])
    official = torch.load(out / "final" / f"videollama_{branch}.pth", weights_only=True)["model"]
    assert len(official) > 0 and sum(v.numel() for v in official.values()) >= res.trainable_params


def test_keep_last_and_atomic_save(tiny_model, tmp_path, monkeypatch):
    from videollama.model.videollama import VideoLLaMA
    from videollama.training.objective import set_trainable

    model = VideoLLaMA.from_pretrained(tiny_model)
    set_trainable(model, "vl")
    for step in (1, 2, 3, 4):
        ckpt.save_checkpoint(tmp_path, step, model, {"step": step}, {}, keep_last=2)
    assert [c.name for c in ckpt.list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]

    def broken_save(obj, path, *a, **k):  # a crash while writing the resume file
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, 5, model, {"step": 5}, {}, keep_last=2)
    monkeypatch.undo()
    assert [c.name for c in ckpt.list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000004"
    assert not list((tmp_path / ckpt.CKPT_DIR).glob(".*"))  # the temporary folder is gone too
    # a half-written folder left by SIGKILL (no rename happened) is ignored, then cleaned on the next save
    stale = tmp_path / ckpt.CKPT_DIR / ".step-00000005.tmp-abc"
    stale.mkdir()
    (stale / ckpt.TRAINABLE_FILE).write_bytes(b"partial")
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000004"
    ckpt.save_checkpoint(tmp_path, 6, model, {"step": 6}, {}, keep_last=2)
    assert not stale.exists()
    assert [c.name for c in ckpt.list_checkpoints(tmp_path)] == ["step-00000004", "step-00000006"]


def test_lora_trains_adapters_and_keeps_llm_frozen(tiny_model, tmp_path):
    from videollama.model.videollama import VideoLLaMA
    from videollama.training.engine import export_final

    out = tmp_path / "run"
    r = recipe(tiny_model, out, "lora={r: 4, alpha: 8, dropout: 0.0}", "optim.init_lr=1.0e-2")
    res = train(r, data_factory=make_batches, resume=False, progress=False, export=False)
    assert res.lora_params > 0
    base = dict(VideoLLaMA.from_pretrained(tiny_model).llm.named_parameters())
    lora_b = {n: p for n, p in res.model.llm.named_parameters() if "lora_B" in n}
    assert lora_b and all(p.requires_grad and p.abs().sum() > 0 for p in lora_b.values())  # B starts at 0
    for name, p in res.model.llm.named_parameters():
        if "lora_" in name:
            continue
        assert not p.requires_grad
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(p, base[key]), name
    state = load_file(str(ckpt.latest_checkpoint(out) / ckpt.TRAINABLE_FILE))
    assert any("lora_A" in k for k in state) and any("lora_B" in k for k in state)
    assert not any(k.startswith("llm.") and "lora_" not in k for k in state)
    # resume from that checkpoint loads the adapters (strict on the trainable set)
    res2 = train(r, data_factory=make_batches, resume=True, progress=False, export=False)
    assert res2.resumed_from is not None and res2.steps == 8 and res2.losses == []
    # export merges LoRA into the LLM: a plain model folder
    folder, _ = export_final(res.model, out, "vl")
    merged = VideoLLaMA.from_pretrained(folder)
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_compile_gives_eager_numbers_and_exports(tiny_model, tmp_path):
    """Recipe key `compile`: the loss's LLM decoder (LoRA inside) through torch.compile trains to eager's losses and
    weights, over caption and instruction batches, and the export (LoRA merged) neither keeps nor needs it."""
    from torch._dynamo.utils import counters

    from videollama.model.videollama import VideoLLaMA

    common = ("lora={r: 4, alpha: 8, dropout: 0.0}", "optim.init_lr=1.0e-2")
    eager = train(recipe(tiny_model, tmp_path / "eager", *common), data_factory=make_batches, resume=False,
                  progress=False)
    counters.clear()
    compiled = train(recipe(tiny_model, tmp_path / "compiled", *common, "compile=true"), data_factory=make_batches,
                     resume=False, progress=False)
    assert counters["stats"]["unique_graphs"] >= 1  # the decoder did run compiled
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-4, abs=1e-5)
    assert "_compiled_decoder" not in compiled.model.__dict__
    a = dict(VideoLLaMA.from_pretrained(tmp_path / "eager" / "final").named_parameters())
    b = dict(VideoLLaMA.from_pretrained(tmp_path / "compiled" / "final").named_parameters())
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


def test_compile_refusals_are_one_line(tmp_path, monkeypatch):
    """On CPU without the C++ compiler inductor would call ($CXX, else g++), and with FSDP sharding, `compile` is
    refused before anything is loaded, with one line naming the recipe and the fix."""
    from videollama.errors import ConfigError
    from videollama.training.engine import check_compile

    r = recipe(tmp_path / "no-model", tmp_path / "run", "compile=true")
    from torch._inductor import config as inductor_config

    missing = str(tmp_path / "no-such-compiler")
    monkeypatch.setenv("CXX", missing)  # inductor reads $CXX at import: its config is patched too
    with inductor_config.patch({"cpp.cxx": (None, missing)}):
        with pytest.raises(ConfigError, match=r"compile: true needs a C\+\+ compiler on CPU") as err:
            check_compile(r, torch.device("cpu"), fsdp=False)
    assert "\n" not in str(err.value) and "no-such-compiler" in str(err.value) and r.name in str(err.value)
    with pytest.raises(ConfigError, match="not supported with strategy fsdp"):
        check_compile(r, torch.device("cpu"), fsdp=True)


def test_export_final_writes_both_official_files_for_audio_visual(tmp_path) -> None:
    import torch

    from videollama.config import load_preset
    from videollama.model.videollama import VideoLLaMA
    from videollama.training.engine import export_final

    torch.manual_seed(0)
    folder, official = export_final(VideoLLaMA(load_preset("tiny")), tmp_path, "av")
    assert official.name == "videollama_vl.pth" and (folder / "videollama_al.pth").exists()
    al = torch.load(folder / "videollama_al.pth", weights_only=True)["model"]
    assert "audio_query_tokens" in al and "audio_llama_proj.weight" in al


def test_a_start_below_an_earlier_runs_checkpoints_is_refused_or_drops_them(tiny_model, tmp_path):
    """Keep-last pruning ranks checkpoints by step: a run started afresh (or from an older checkpoint) in a folder
    holding an earlier run's later checkpoints would have its own pruned and a later resume pick the stale ones.
    Such a start is refused with a one-line error; `overwrite` drops them first."""
    from tests.training.conftest import run_cli
    from videollama.errors import CheckpointError, ConfigError

    out = tmp_path / "run"
    train(recipe(tiny_model, out), data_factory=make_batches, resume=False, progress=False, export=False)
    earlier = [c.name for c in ckpt.list_checkpoints(out)]
    assert earlier == ["step-00000006", "step-00000008"]
    with pytest.raises(ConfigError, match=r"2 checkpoint\(s\) of an earlier run past step 0 \(newest step-00000008\)"):
        train(recipe(tiny_model, out), data_factory=make_batches, resume=False, progress=False, export=False)
    assert [c.name for c in ckpt.list_checkpoints(out)] == earlier  # refused before anything was touched

    res = train(recipe(tiny_model, out), data_factory=make_batches, resume=False, overwrite=True, progress=False,
                export=False, max_steps=4)
    assert res.steps == 4 and res.resumed_from is None
    assert [c.name for c in ckpt.list_checkpoints(out)] == ["step-00000002", "step-00000004"]
    # a later resume goes on from this run's own newest checkpoint
    res = train(recipe(tiny_model, out), data_factory=make_batches, resume=True, progress=False, export=False,
                max_steps=6)
    assert res.resumed_from.endswith("step-00000004") and len(res.losses) == 2
    # resuming from an older checkpoint: the later ones are another timeline's
    older = ckpt.list_checkpoints(out)[0]
    assert older.name == "step-00000004"
    with pytest.raises(ConfigError, match=r"past step 4 \(newest step-00000006\)"):
        train(recipe(tiny_model, out), data_factory=make_batches, resume=str(older), progress=False, export=False)
    with pytest.raises(CheckpointError, match="nowhere: not a training checkpoint folder"):
        train(recipe(tiny_model, out), data_factory=make_batches, resume=str(tmp_path / "nowhere"), progress=False)

    # the CLI: --resume never is refused in one line naming the folder, --overwrite starts over
    proc = run_cli(tiny_model, out, "--resume", "never", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {out / 'checkpoints'}: holds 2 checkpoint(s) of an earlier run past step 0 (newest step-00000006); "
        "resume it (--resume auto), choose another output_dir, or pass --overwrite to drop them")
    run_cli(tiny_model, out, "--resume", "never", "--overwrite", "--max-steps", "2", "--no-export")
    assert [c.name for c in ckpt.list_checkpoints(out)] == ["step-00000002"]
