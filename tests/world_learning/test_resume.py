"""`world_learning.py --train --resume`: an interrupted learning-proof run goes on where it stopped."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from tests.world_learning.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))


def test_progress_keeps_finished_steps_until_one_runs_again(tmp_path):
    from world_learning import Progress

    first = Progress(tmp_path, {"seed": 1}, resume=False)
    assert first.finished("generate") is None and first.resuming is None  # no --resume: nothing is resumed
    for step in ("generate", "model", "cache"):
        first.record(step, {"s": step})
    again = Progress(tmp_path, {"seed": 1}, resume=True)
    assert again.finished("generate") == {"s": "generate"} and again.finished("model") == {"s": "model"}
    assert again.finished("stage1") is None and again.resuming == "stage1"
    assert again.finished("stage2") is None and again.resuming == "stage1"  # only the first step run again resumes
    again.record("model", {"s": "model, again"})  # a step run again drops every later one
    assert json.loads((tmp_path / "progress.json").read_text())["done"] == {"generate": {"s": "generate"},
                                                                           "model": {"s": "model, again"}}
    with pytest.raises(SystemExit, match=rf"--resume: {tmp_path} holds a run with other options \(differs: n, seed\)"):
        Progress(tmp_path, {"seed": 2, "n": 3}, resume=True)
    (tmp_path / "progress.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="progress.json is not a progress file of this script"):
        Progress(tmp_path, {"seed": 1}, resume=True)


def test_an_option_added_later_left_at_its_default_still_resumes_older_runs(tmp_path):
    """`--visual-weight` came after runs were made: empty (the smol preset's default), it is not recorded (an older
    run resumes); set, it is. A bad value stops the run with one line before anything is generated."""
    from world_learning import apply_preset_defaults, main, parse_args, training_options

    def recorded(*argv):  # what a run compares on --resume: the parsed options after the preset's defaults
        return training_options(apply_preset_defaults(parse_args(["--train", "--work", str(tmp_path), *argv])))

    plain = recorded("--preset", "smol")
    assert "visual_weight" not in plain and plain["seed"] == 1
    assert recorded("--visual-weight", "move=3")["visual_weight"] == ["move=3"]
    assert recorded()["visual_weight"] == ["move=2"]  # the tiny preset's default is recorded
    with pytest.raises(SystemExit, match="unknown visual story 'jump'"):
        main(["--train", "--work", str(tmp_path / "w"), "--visual-weight", "jump=2"])
    assert not (tmp_path / "w").exists()


def test_train_resumes_an_interrupted_stage_from_its_checkpoint(tmp_path, capsys):
    """A run whose stage 2 stopped after its first checkpoint: --resume keeps the world, the cache and stage 1 and
    trains stage 2 on from that checkpoint; other options are refused."""
    from world_learning import main

    fast = ["optim.iters_per_epoch=4", "optim.warmup_steps=1", "optim.batch_size=2", "num_workers=0",
            "save_every_steps=2", "keep_last=2", "compile=false", "instruct_max_len=320"]
    work = tmp_path / "run"
    argv = ["--train", "--work", str(work), "--n", "8", "--heldout-n", "2", "--workers", "1", "--ablations", "a",
            "--limit", "2", "--max-new-tokens", "2", "--stage1", *fast, "--stage2", *fast]
    assert main(argv) == 0
    progress = json.loads((work / "progress.json").read_text())
    assert list(progress["done"]) == ["generate", "model", "cache", "stage1", "stage2"]
    assert progress["done"]["stage2"]["steps"] == 4 and "resumed_from" not in progress["done"]["stage2"]
    # interrupt stage 2 after its step-2 checkpoint: no step-4 checkpoint, no final model, not recorded as done
    del progress["done"]["stage2"]
    (work / "progress.json").write_text(json.dumps(progress))
    ckpts = work / "stage2" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-00000002", "step-00000004"]
    shutil.rmtree(ckpts / "step-00000004")
    shutil.rmtree(work / "stage2" / "final")
    kept = {p: p.stat().st_mtime_ns for p in (work / "train" / "manifest.json", work / "av_cache" / "index.json",
                                            work / "stage1" / "final" / "config.json")}
    capsys.readouterr()
    assert main(argv + ["--resume"]) == 0
    err = capsys.readouterr().err
    for step in ("generate", "model", "cache", "stage1"):
        assert f"kept step '{step}'" in err
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # nothing finished was made again
    stage2 = json.loads((work / "progress.json").read_text())["done"]["stage2"]
    assert stage2["steps"] == 4 and stage2["resumed_from"].endswith("step-00000002")
    assert len(stage2["losses"]) == 2  # steps 3 and 4 only
    assert (work / "stage2" / "final" / "config.json").is_file()
    with pytest.raises(SystemExit, match=r"other options \(differs: stage2\)"):
        main(argv[:-1] + ["optim.batch_size=1", "--resume"])
    # a run that starts over (no --resume) trains stage 2 afresh: the earlier run's checkpoints go first, so that a
    # later --resume cannot pick up a checkpoint newer than the new run's own
    stale = ckpts / "step-00000099"
    shutil.copytree(ckpts / "step-00000004", stale)
    assert main(argv) == 0
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-00000002", "step-00000004"]
