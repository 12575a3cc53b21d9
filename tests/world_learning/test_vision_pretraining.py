"""Pretraining of the world image stack (ViT + image Q-Former) on rendered frames (world.vision_pretraining)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import torch

from videollama.media.normalize import normalize_frames
from videollama.world import vocab as V
from videollama.world.generate import WorldOptions, make_scenes
from videollama.world.render import render_frame
from videollama.world.scene import state_at_frame
from videollama.world.vision_pretraining import (
    VisionPretrainOptions, colour_centres, colour_slots, label_maps, patch_labels, pretrain_vision, rendered_frames,
)


def test_label_maps_match_the_rendered_pixels() -> None:
    """Every labelled pixel has its object's colour and every other pixel the background (same masks as render)."""
    colours = list(V.COLOURS)
    for scene in make_scenes(WorldOptions(n=14, seed=3)):
        for frame in scene["slot_frames"][::3]:
            img = render_frame(scene, frame)
            maps = label_maps(scene, frame)
            assert maps.shape == (2, scene["height"], scene["width"])
            fg = maps[0] > 0
            assert np.array_equal(fg, maps[1] > 0)
            want = np.array([V.BACKGROUNDS[scene["background"]]] + [V.COLOURS[c] for c in colours], np.uint8)[maps[0]]
            assert np.array_equal(img, want), scene["id"]


def test_patch_labels_take_the_patch_centres() -> None:
    maps = np.zeros((2, 8, 8), np.int64)
    maps[0, 1, 1], maps[1, 1, 1] = 3, 2  # centre of the top-left 4x4 patch is (2, 2): not labelled here
    maps[0, 2, 6], maps[1, 2, 6] = 5, 4  # centre of the top-right patch
    lab = patch_labels(maps, 2)
    assert lab.tolist() == [[0, 5, 0, 0], [0, 4, 0, 0]]


def test_colour_slots_name_each_colours_shape() -> None:
    seen = set()
    for scene in make_scenes(WorldOptions(n=20, seed=4)):
        for frame in scene["slot_frames"]:
            slots, objs = colour_slots(scene, frame), state_at_frame(scene, frame)
            assert slots.shape == (len(V.COLOURS),) and (slots > 0).sum() == len(objs)
            assert {(list(V.COLOURS)[c], V.SHAPES[s - 1]) for c, s in enumerate(slots) if s} == {
                (o["colour"], o["shape"]) for o in objs}
            seen.add(len(objs))
            centres = colour_centres(scene, frame)
            for o in objs:
                assert np.allclose(centres[list(V.COLOURS).index(o["colour"])],
                                   (o["centre"][0] / scene["width"], o["centre"][1] / scene["height"]))
            assert not centres[slots == 0].any()
    assert seen >= {0, 1, 2, 3}


def test_rendered_stream_is_seeded_and_never_shows_heldout_pairs() -> None:
    a = list(itertools.islice(rendered_frames(0, 16, 224, scenes_per_block=8), 70))  # crosses a block boundary
    b = list(itertools.islice(rendered_frames(0, 16, 224, scenes_per_block=8), 70))
    c = list(itertools.islice(rendered_frames(1, 16, 224, scenes_per_block=8), 5))
    assert all(torch.equal(x[0], y[0]) and all(np.array_equal(u, v) for u, v in zip(x[1:], y[1:])) for x, y in zip(a, b))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))
    assert a[0][0].shape == (224, 224, 3) and a[0][0].dtype == torch.uint8 and a[0][1].shape == (2, 256)
    assert all(set(np.unique(lab[0][lab[0] > 0]) - 1) == set(np.flatnonzero(slots)) for _, lab, slots, _ in a)
    assert all(((centres > 0).all(1) == (slots > 0)).all() and (centres < 1).all() for _, _, slots, centres in a)
    pairs = {(int(s), int(col)) for _, lab, _, _ in a for col, s in zip(*lab) if col}
    heldout = {(V.SHAPES.index(s) + 1, list(V.COLOURS).index(c) + 1) for s, c in V.HELDOUT_PAIRS}
    assert len(pairs) > 5 and not pairs & heldout


def test_pretraining_starts_from_sin_cos_positions(world_model) -> None:
    """The ViT's seeded position table is replaced by the 2-D sin-cos one (CLS row 0, then row-major y, x)."""
    from videollama.model.videollama import VideoLLaMA

    model = VideoLLaMA.from_pretrained(world_model)
    seeded = model.vision.encoder.pos_embed.detach().clone()
    pretrain_vision(model, VisionPretrainOptions(steps=0), progress=False, eval_frames=4)
    table = model.vision.encoder.pos_embed[0]
    assert not torch.equal(table, seeded[0]) and torch.equal(table[0], torch.zeros(table.shape[1]))
    q = table.shape[1] // 4  # [sin y | cos y | sin x | cos x], the first frequency is 1
    grid = int((table.shape[0] - 1) ** 0.5)
    for k, (y, x) in enumerate([(0, 0), (0, 3), (5, 2)]):
        row = table[1 + y * grid + x]
        assert torch.allclose(row[[0, q, 2 * q, 3 * q]], torch.tensor([np.sin(y), np.cos(y), np.sin(x), np.cos(x)],
                                                                       dtype=row.dtype), atol=1e-6), k
    kept = VideoLLaMA.from_pretrained(world_model)
    pretrain_vision(kept, VisionPretrainOptions(steps=0, sincos_positions=False), progress=False, eval_frames=4)
    assert torch.equal(kept.vision.encoder.pos_embed, seeded)


def _first_block_attention(vit, frames: torch.Tensor) -> torch.Tensor:
    """(N, heads, P, P) attention probabilities of the ViT's first block among the patch tokens of uint8 frames."""
    import torch.nn.functional as F

    with torch.no_grad():
        x = vit.patch_embed(normalize_frames(frames).permute(1, 0, 2, 3)) + vit.pos_embed[:, 1:]
        attn = vit.blocks[0].attn
        width, heads = x.shape[-1], attn.heads
        h = vit.blocks[0].norm1(x)
        q = F.linear(h, attn.qkv.weight[:width], attn.q_bias)  # as Attention.forward: q has a bias, k has none
        k = F.linear(h, attn.qkv.weight[width:2 * width])
        q, k = (t.view(*x.shape[:2], heads, -1) for t in (q, k))
        return torch.einsum("nphd,nqhd->nhpq", q, k).mul((width // heads) ** -0.5).softmax(-1)


def test_mimetic_init_makes_the_vits_attention_follow_token_similarity(world_model) -> None:
    """W_q = W_k = sqrt(s) * an orthogonal matrix per block, so a patch's attention favours patches like itself
    (same content, nearby sin-cos position): on rendered frames the first block puts several times more of it on
    the patch itself and its 8 neighbours than the seeded init, which attends almost uniformly."""
    from videollama.model.videollama import VideoLLaMA

    frames = torch.stack([f for f, *_ in itertools.islice(rendered_frames(0, 16, 224, scenes_per_block=8), 4)])
    yx = torch.stack(torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij"), -1).flatten(0, 1).float()
    near = (torch.cdist(yx, yx) <= 1.5).float()  # 224 px / patch 14: a 16 x 16 grid; the patch and its 8 neighbours
    mass, self_mass = {}, {}
    for strength in (0.0, 3.0):
        model = VideoLLaMA.from_pretrained(world_model)
        pretrain_vision(model, VisionPretrainOptions(steps=0, mimetic_attention=strength), progress=False, eval_frames=4)
        probs = _first_block_attention(model.vision.encoder, frames)
        mass[strength] = (probs * near).sum(-1).mean().item()
        self_mass[strength] = probs.diagonal(dim1=-2, dim2=-1).mean().item()
        if strength:
            for block in model.vision.encoder.blocks:
                w = block.attn.qkv.weight
                width = w.shape[1]
                assert torch.equal(w[:width], w[width:2 * width])
                assert torch.allclose(w[:width] @ w[:width].T, strength * torch.eye(width), atol=1e-4)
    assert mass[0.0] < 2 * 9 / 256, mass  # the seeded init: about uniform (9 of 256 patches)
    assert mass[3.0] > 2.5 * mass[0.0] and self_mass[3.0] > 5 * self_mass[0.0], (mass, self_mass)


def test_pretraining_trains_only_the_image_stack_and_beats_a_probe_of_the_random_one(world_model) -> None:
    from tests.world_learning.conftest import pretrain_against_probe

    # ~100 steps of 16 frames are the least in which the frame-level read-out (count) rises on the tiny model
    opts = VisionPretrainOptions(steps=100, batch_size=16, lr=3e-3, warmup_steps=5, scenes_per_block=64)
    base, info, model = pretrain_against_probe(  # baseline: the same heads and steps on the random stack
        world_model, pretrain_vision, opts, dataclasses.replace(opts, train_vit=False, train_image_qformer=False),
        {"vision", "image_qformer"}, eval_frames=48)
    for m in (model.vision, model.image_qformer):
        assert not any(p.requires_grad for p in m.parameters()) and not m.training
    assert info["loss_last"] < base["loss_last"]
    acc, base_acc = info["accuracy"], base["accuracy"]
    assert acc["colour_objects"] > base_acc["colour_objects"] + 10, (base, info)
    assert acc["count"] > base_acc["count"] + 20, (base, info)  # read from the image Q-Former's tokens


def test_benchmark_pretrains_the_model_folders_encoders(world_model, tmp_path) -> None:
    """world_learning.py --vision-steps / --audio-steps: the model folder's ViT, image Q-Former and audio encoder
    are replaced, nothing else."""
    import shutil
    import sys

    from tests.world_learning.conftest import ROOT
    from videollama.model.videollama import VideoLLaMA

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from world_learning import pretrain_world_encoders

    folder = shutil.copytree(world_model, tmp_path / "model")
    info = pretrain_world_encoders(folder, 3, 2, 0, None, mimetic_attention=3.0)
    assert info["vision_pretraining"]["options"]["steps"] == 3 and info["audio_pretraining"]["options"]["steps"] == 2
    assert info["vision_pretraining"]["options"]["mimetic_attention"] == 3.0
    before, after = VideoLLaMA.from_pretrained(world_model).state_dict(), VideoLLaMA.from_pretrained(folder).state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"vision", "image_qformer", "audio_encoder"}


def test_continued_pretraining_keeps_the_stack_until_the_heads_have_settled(world_model) -> None:
    """continue_training: no query re-draw, sin-cos reset or mimetic init; during heads_only_steps only the heads
    learn (the stack is bit-identical after them); after that the stack trains too. The per-token slot head adds
    the per-token and mean-token shape accuracies."""
    from videollama.model.videollama import VideoLLaMA

    def stack(m) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in m.state_dict().items() if k.split(".")[0] in ("vision", "image_qformer")}

    opts = VisionPretrainOptions(steps=3, batch_size=4, scenes_per_block=8, continue_training=True,
                                 heads_only_steps=3, token_slot_weight=1.0, mimetic_attention=3.0)
    model = VideoLLaMA.from_pretrained(world_model)
    before = stack(model)
    info = pretrain_vision(model, opts, progress=False, eval_frames=8)
    assert all(torch.equal(before[k], v) for k, v in stack(model).items())
    assert {"token_shape", "mean_token_shape", "mean_token_centre_error", "slot_shape"} <= set(info["accuracy"])
    assert info["options"]["continue_training"] and info["options"]["token_slot_weight"] == 1.0

    trained = VideoLLaMA.from_pretrained(world_model)
    pretrain_vision(trained, dataclasses.replace(opts, steps=4, heads_only_steps=2), progress=False, eval_frames=8)
    after = stack(trained)
    assert {k.split(".")[1] for k in before if not torch.equal(before[k], after[k])} >= {"encoder"}
    queries, table = "image_qformer.query_tokens", "vision.encoder.pos_embed"
    assert not torch.equal(before[queries], after[queries])  # trained, but not re-drawn N(0, 1) (std stays small)
    assert after[queries].std() < 0.5 and torch.allclose(after[table], before[table], atol=0.05)
    # without the per-token head, the accuracies are the first run's keys only
    plain = pretrain_vision(VideoLLaMA.from_pretrained(world_model), VisionPretrainOptions(steps=0), progress=False,
                            eval_frames=4)
    assert "token_shape" not in plain["accuracy"]


def test_the_mean_only_read_out_reads_the_tokens_mean(world_model) -> None:
    """StackHeads(mean_only=True): the per-token head reads the mean of the image Q-Former's tokens once (one row
    of logits and centres per frame, what the every-token head gives for the mean), so the loss asks nothing of
    the single tokens; stack_accuracy reports both shape figures from it and the tokens' sharing."""
    from videollama.model.videollama import VideoLLaMA
    from videollama.world.vision_pretraining import FrameBatch, StackHeads, stack_accuracy

    model = VideoLLaMA.from_pretrained(world_model)
    cfg = model.config
    torch.manual_seed(0)
    each = StackHeads(cfg.vision.width, cfg.image_qformer.hidden, cfg.image_qformer.heads, token_slots=True)
    mean = StackHeads(cfg.vision.width, cfg.image_qformer.hidden, cfg.image_qformer.heads, token_slots=True,
                      mean_only=True)
    mean.load_state_dict(each.state_dict())
    size, grid = cfg.vision.image_size, cfg.vision.image_size // cfg.vision.patch_size
    frames = torch.randint(0, 256, (3, size, size, 3), dtype=torch.uint8)
    with torch.no_grad():
        got, ref = mean(model, frames), each(model, frames)
    q = cfg.image_qformer.num_query_tokens
    assert ref["token_slots"].shape[1] == q and got["token_slots"].shape[1] == 1
    assert torch.allclose(got["token_slots"][:, 0], ref["token_slots"].mean(1), atol=1e-5)
    assert torch.allclose(got["token_centres"][:, 0], ref["token_centres"].mean(1), atol=1e-5)
    batch = FrameBatch(frames, torch.zeros(3, 2, grid * grid, dtype=torch.long), torch.tensor([[1, 0, 0, 0, 2]] * 3),
                       torch.full((3, 5, 2), 0.5))
    acc = stack_accuracy(model, mean, batch)
    assert acc["token_shape"] == acc["mean_token_shape"] and 0.0 <= acc["token_sharing"] <= 1.0


def test_the_per_token_slot_loss_asks_every_token_for_every_colour() -> None:
    """_loss with token_slot_weight: cross-entropy of each token's (colours, 1 + shapes) logits against the frame's
    colour slots plus token_centre_weight x the squared error of its centres where the colour is on screen (halved:
    per coordinate), added with that weight; a head that names every slot and centre right adds (almost) nothing, and
    centres of absent colours do not count."""
    from videollama.world.vision_pretraining import FrameBatch, _loss

    n, q, p = 2, 3, 4
    slots = torch.tensor([[0, 2, 0, 0, 5], [1, 0, 0, 3, 0]])
    centres = torch.rand(n, 5, 2) * (slots > 0)[..., None]
    batch = FrameBatch(frames=torch.zeros(n, 8, 8, 3, dtype=torch.uint8), patches=torch.zeros(n, 2, p, dtype=torch.long),
                       slots=slots, centres=centres)
    out = {"patch_colour": torch.zeros(n, p, 6), "patch_shape": torch.zeros(n, p, 6), "slots": torch.zeros(n, 5, 6),
           "count": torch.zeros(n, 5)}
    base = _loss(out, batch, 5.0)
    right = torch.nn.functional.one_hot(slots, 6).float()[:, None].expand(n, q, 5, 6) * 50
    uniform = torch.zeros(n, q, 5, 6)
    at = centres[:, None].expand(n, q, 5, 2) + 7.0 * (slots == 0)[:, None, :, None]  # absent colours: ignored
    assert torch.allclose(_loss({**out, "token_slots": right, "token_centres": at}, batch, 5.0, 2.0, 4.0), base,
                          atol=1e-4)
    assert torch.allclose(_loss({**out, "token_slots": uniform, "token_centres": at}, batch, 5.0, 2.0, 4.0),
                          base + 2.0 * np.log(6), atol=1e-4)
    off = at + 0.1 * (slots > 0)[:, None, :, None]  # every present centre 0.1 off in x and y
    assert torch.allclose(_loss({**out, "token_slots": right, "token_centres": off}, batch, 5.0, 2.0, 4.0),
                          base + 2.0 * 4.0 * 0.01, atol=1e-4)
    assert torch.allclose(_loss({**out, "token_slots": right, "token_centres": off}, batch, 5.0, 2.0, 0.0), base,
                          atol=1e-4)  # shape only
    assert torch.equal(_loss({**out, "token_slots": uniform, "token_centres": off}, batch, 5.0, 0.0), base)
