"""Diagnostics of what the Q-Former tokens carry: are the query outputs distinct, or one token repeated?

A Q-Former's learned queries are meant to read different things from the frames. In the learning proof on the
synthetic world, the trained video Q-Former's 32 outputs came out as one token repeated 32 times
(docs/world.md, "Session 12"), which a probe that attends over the tokens cannot see through, and which limits
what reaches the LLM to one token's worth. `shared_token_fraction` measures that collapse; `qformer_token_sharing`
reports it for a model's image and video Q-Formers on real videos. `video_qformer_reads` shows where the video
Q-Former's cross-attention looks: how peaked it is, whether the queries look at different tokens, and which frames
get the attention (docs/world.md, "Session 15"). `answer_attention` shows where the LLM looks from the position
that writes an answer's first token: how much of its attention goes to each media span and to the text, and how
peaked it is over the video tokens (docs/world.md, "Session 17"). `motion_direction_probe` asks how far a linear
read-out finds the direction a shape moves at each stage of the video path (docs/world.md, "Session 23"). Written
by hand: a few lines of variance, attention and ridge bookkeeping; no library ships these measures.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Sequence

import torch

if TYPE_CHECKING:
    from videollama.model.videollama import MediaEmbeddings


def shared_token_fraction(tokens: torch.Tensor) -> float:
    """Fraction of the across-input variance of (V, Q, H) tokens (V inputs, Q tokens each) that all Q tokens of an
    input share: 1.0 when the Q tokens are one token repeated, about 1/Q when they vary independently. Each token's
    mean over the V inputs is removed first, so constant differences between the queries do not count as diversity."""
    if tokens.dim() != 3 or tokens.shape[0] < 2:
        raise ValueError(f"tokens must be (V >= 2 inputs, Q, H), got {tuple(tokens.shape)}")
    tokens = tokens.double()
    dev = tokens - tokens.mean(0)
    total = dev.pow(2).sum()
    if total == 0:
        raise ValueError("tokens do not vary across the inputs: the fraction is undefined")
    own = (dev - dev.mean(1, keepdim=True)).pow(2).sum()
    return float(1 - own / total)


@contextmanager
def _eager_attention(model) -> Iterator[None]:
    """Run a transformers model with eager attention (sdpa does not return the attention weights), then restore
    the implementation it had."""
    saved = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(saved)


def _through_video_path(model, videos: Sequence[str | os.PathLike[str]],
                        n_frames: int) -> Iterator[tuple[torch.Tensor, MediaEmbeddings]]:
    """Each of `videos`, sampled as at inference (uniform `n_frames`), through a `VideoLLaMA`'s video path: yields
    its image Q-Former features (1, T, Q, Hq) and the video path's output (`MediaEmbeddings`, with intermediates)."""
    from videollama.media.video import load_video

    for path in videos:
        clip = load_video(path, n_frames=n_frames)
        feats = model.frame_features(clip.tensor.to(device=model.device, dtype=model.dtype))
        yield feats, model.video_from_frame_features(feats)


@torch.no_grad()
def qformer_token_sharing(model, videos: Sequence[str | os.PathLike[str]], n_frames: int = 8) -> dict[str, float | int]:
    """`shared_token_fraction` of a `VideoLLaMA`'s image Q-Former tokens (within each frame) and video Q-Former
    outputs (within each video), over `videos` sampled as at inference (uniform `n_frames`)."""
    frame_tokens, video_tokens = [], []
    for feats, out in _through_video_path(model, videos, n_frames):
        video_tokens.append(out.intermediates["video_qformer_out"][0].float())
        frame_tokens.append(feats[0].float())
    frames = torch.cat(frame_tokens)  # (sum T, Q, Hq): each frame one input
    return {"videos": len(video_tokens), "image_qformer_per_frame": round(shared_token_fraction(frames), 3),
            "video_qformer": round(shared_token_fraction(torch.stack(video_tokens)), 3)}


@torch.no_grad()
def video_qformer_reads(model, videos: Sequence[str | os.PathLike[str]], n_frames: int = 8) -> list[list[dict]]:
    """Where a `VideoLLaMA`'s video Q-Former reads from, over `videos` (uniform `n_frames`, as at inference).

    One list per cross-attention layer, one dict per head, averaged over the videos and the queries:
    ``entropy`` of the attention over the T*Q frame tokens (nats; uniform attention: log(T*Q)), ``distinct_keys``
    (how many different tokens the queries' attention peaks on; 1 when every query reads the same token) and
    ``frame_mass`` (the attention's share per frame, T values that sum to 1).
    """
    qf = model.video_qformer.model
    sums: list[dict[str, torch.Tensor]] = []
    with _eager_attention(qf):
        for feats, path_out in _through_video_path(model, videos, n_frames):
            frame_tokens = path_out.intermediates["frame_tokens_with_pos"]
            t, q = feats.shape[1], feats.shape[2]
            queries = model.video_qformer.query_tokens.expand(frame_tokens.shape[0], -1, -1)
            out = qf(query_embeds=queries, encoder_hidden_states=frame_tokens, output_attentions=True)
            layers = [a for a in out.cross_attentions if a is not None]
            for i, attn in enumerate(layers):
                attn = attn[0].double()  # (heads, queries, T*Q)
                stats = {"entropy": -(attn * attn.clamp_min(1e-30).log()).sum(-1).mean(-1),
                         "distinct_keys": torch.tensor([float(len(set(h.argmax(-1).tolist()))) for h in attn]),
                         "frame_mass": attn.view(*attn.shape[:2], t, q).sum(-1).mean(1)}
                if len(sums) <= i:
                    sums.append({k: torch.zeros_like(v) for k, v in stats.items()})
                for k, v in stats.items():
                    sums[i][k] += v
    if not sums:
        raise ValueError("video_qformer_reads needs at least one video")
    n = len(videos)
    return [[{"entropy": round(float(layer["entropy"][h]) / n, 3),
              "distinct_keys": round(float(layer["distinct_keys"][h]) / n, 2),
              "frame_mass": [round(float(x) / n, 3) for x in layer["frame_mass"][h]]}
             for h in range(len(layer["entropy"]))] for layer in sums]


@torch.no_grad()
def answer_attention(pipe, requests: Sequence[tuple[str | os.PathLike[str], str]]) -> list[list[dict]]:
    """Where a pipeline's LLM attends from the last prompt position (the one that writes the first answer token),
    over `requests` of (media file, question), each asked as the first question of a new conversation.

    One list per LLM layer, one dict per head, averaged over the requests: ``share`` of the attention on the first
    position (BOS), on each media span (``audio``, ``video``, ...) and on the rest of the ``text``; and, over the
    video span alone, ``video_entropy`` (nats; uniform: log of its length) and ``video_top`` (its largest
    weight's share of the span's attention).
    """
    llm = pipe.model.llm
    sums: list[list[dict[str, tuple[float, int]]]] = []  # per layer, per head: measure -> (sum, count)
    with _eager_attention(llm):
        for media, question in requests:
            session = pipe.chat(media)
            embeds = session.prompt_for(question)
            out = llm(inputs_embeds=embeds, output_attentions=True, use_cache=False)
            spans = session.media_spans
            for i, attn in enumerate(out.attentions):
                if len(sums) <= i:
                    sums.append([{} for _ in range(attn.shape[1])])
                for h, row in enumerate(attn[0, :, -1].double()):
                    stats = {"first": float(row[0])}
                    for name, (a, b) in spans.items():
                        stats[name] = float(row[a:b].sum())
                    stats["text"] = 1.0 - sum(stats.values())
                    if "video" in spans:
                        a, b = spans["video"]
                        p = row[a:b] / row[a:b].sum().clamp_min(1e-30)
                        stats["video_entropy"] = float(-(p * p.clamp_min(1e-30).log()).sum())
                        stats["video_top"] = float(p.max())
                    for k, v in stats.items():  # counted per measure: not every request has every span
                        total, count = sums[i][h].get(k, (0.0, 0))
                        sums[i][h][k] = (total + v, count + 1)
    if not sums:
        raise ValueError("answer_attention needs at least one (media, question) request")
    return [[{"share": {k: round(t / c, 3) for k, (t, c) in head.items() if not k.startswith("video_")},
              **{k: round(t / c, 3) for k, (t, c) in head.items() if k.startswith("video_")}}
             for head in layer] for layer in sums]


def probe_accuracy(features: torch.Tensor, labels: Sequence[int], folds: int = 5, ridge: float = 10.0) -> float:
    """% of the inputs whose class a linear read-out of their (N, F) `features` names, cross-validated: a ridge
    regression onto one-hot labels (features standardised on the training part) is fitted on all folds but one
    (input i is in fold i % `folds`) and scores that one, in turn. Closed-form ridge, a few lines: not worth a
    dependency (scikit-learn is not one)."""
    x = features.double().flatten(1)
    y = torch.as_tensor(list(labels))
    if len(x) != len(y) or len(y) < folds:
        raise ValueError(f"need as many labels as inputs and at least {folds} of them, got {len(y)} for {len(x)}")
    target = torch.nn.functional.one_hot(y).double()
    fold = torch.arange(len(y)) % folds
    hits = 0
    for k in range(folds):
        test, train = fold == k, fold != k
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        design = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=x.dtype)], 1)
        a = design[train]
        weights = torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1], dtype=x.dtype), a.T @ target[train])
        hits += int(((design[test] @ weights).argmax(1) == y[test]).sum())
    return round(100 * hits / len(y), 1)


@torch.no_grad()
def motion_direction_probe(model, videos: Sequence[str | os.PathLike[str]], directions: Sequence[str],
                           n_frames: int = 8) -> dict[str, float | int]:
    """How far the direction in which each video's shape moves (`directions`, one word per video) can be read
    linearly (`probe_accuracy`, % of the videos) at each stage of a `VideoLLaMA`'s video path: the image Q-Former's
    tokens (their mean per frame, the frames side by side), the video Q-Former's outputs and the LLM input
    embeddings (their mean). Chance is about 100 / the number of directions."""
    stages: dict[str, list[torch.Tensor]] = {"frame_tokens": [], "video_qformer": [], "llm_embeds": []}
    for feats, out in _through_video_path(model, videos, n_frames):
        stages["frame_tokens"].append(feats[0].mean(1).flatten().float().cpu())
        stages["video_qformer"].append(out.intermediates["video_qformer_out"][0].flatten().float().cpu())
        stages["llm_embeds"].append(out.llm_embeds[0].mean(0).float().cpu())
    names = sorted(set(directions))
    labels = [names.index(d) for d in directions]
    return {"videos": len(labels), **{k: probe_accuracy(torch.stack(v), labels) for k, v in stages.items()}}
