"""The Video-LLaMA model: media encoders + Q-Formers + projections around a frozen causal LM.

Vision-language branch: frames -> EVA ViT -> ln_vision -> image Q-Former -> + frame position
-> video Q-Former -> `video_proj` -> LLM embeddings (B, 32, D).
Audio-language branch: log-mel clips -> ImageBind audio -> + clip position -> audio Q-Former
-> `audio_proj` -> LLM embeddings (B, 8, D).
The media embeddings are spliced into the LLM's `inputs_embeds` exactly where the official
code puts them (caption path, instruction path, chat prompt).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from videollama.config import VideoLLaMAConfig
from videollama.errors import CheckpointError, ConfigError
from videollama.model import label_decoder
from videollama.model.eva_vit import VisionEncoder
from videollama.model.imagebind import ImageBindAudio, ImageBindVision
from videollama.model.qformer import QFormer

IGNORE_INDEX = -100


@dataclass
class MediaEmbeddings:
    """LLM-ready media tokens plus the intermediates of the path that made them (for inspection/tests)."""

    llm_embeds: torch.Tensor  # (B, N, D)
    intermediates: dict[str, torch.Tensor]


def _runs(flags: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor, in order."""
    runs: list[int] = []
    previous = False
    for flag in flags.tolist():
        if flag:
            if previous:
                runs[-1] += 1
            else:
                runs.append(1)
        previous = flag
    return runs


def build_llm(cfg: VideoLLaMAConfig) -> PreTrainedModel:
    """An untrained causal LM of the configured architecture (weights come from `load_pretrained`)."""
    hf = dict(cfg.llm.hf_config)
    model_type = hf.pop("model_type")
    hf_config = AutoConfig.for_model(model_type, **hf)
    return AutoModelForCausalLM.from_config(hf_config, dtype=getattr(torch, cfg.llm.dtype))


class MediaStandardizer(nn.Module):
    """Frozen per-channel `(x - mean) / std` of the frozen encoders' outputs (not official; see
    `VideoLLaMAConfig.standardize_media_features`). The statistics are buffers set by `fit`."""

    def __init__(self, video_dim: int, audio_dim: int | None) -> None:
        super().__init__()
        self.register_buffer("video_mean", torch.zeros(video_dim))
        self.register_buffer("video_std", torch.ones(video_dim))
        if audio_dim is not None:
            self.register_buffer("audio_mean", torch.zeros(audio_dim))
            self.register_buffer("audio_std", torch.ones(audio_dim))

    def video(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats - self.video_mean.to(feats.dtype)) / self.video_std.to(feats.dtype)

    def audio(self, embeds: torch.Tensor) -> torch.Tensor:
        return (embeds - self.audio_mean.to(embeds.dtype)) / self.audio_std.to(embeds.dtype)

    @torch.no_grad()
    def fit(self, frame_features: torch.Tensor | None = None, audio_embeds: torch.Tensor | None = None,
            min_std: float = 1e-6) -> None:
        """Set the statistics from samples: frame features (..., Hq) and/or audio embeddings (..., O)."""
        for name, x in (("video", frame_features), ("audio", audio_embeds)):
            if x is None:
                continue
            x = x.reshape(-1, x.shape[-1]).double()
            getattr(self, f"{name}_mean").copy_(x.mean(0))
            getattr(self, f"{name}_std").copy_(x.std(0).clamp_min(min_std))


class VideoLLaMA(nn.Module):
    """Video-LLaMA. Build with `VideoLLaMA(config)` (random weights) or `VideoLLaMA.from_pretrained(folder)`."""

    #: `lm_loss` runs a Llama decoder's last layer at the labelled positions only (`label_decoder`); False: the
    #: full decoder (same numbers, slower; for benchmarks/train.py --only label)
    last_layer_at_labels: bool = True

    def __init__(self, config: VideoLLaMAConfig, llm: PreTrainedModel | None = None) -> None:
        super().__init__()
        self.config = config
        qf = config.image_qformer
        self.vision = VisionEncoder(config.vision)
        self.image_qformer = QFormer(qf)
        self.frame_position_embedding = nn.Embedding(config.max_frame_pos, qf.hidden)
        self.video_qformer = QFormer(config.video_qformer)
        d_llm = config.llm.hidden_size
        self.video_proj = nn.Linear(config.video_qformer.hidden, d_llm)
        self.audio_encoder: ImageBindAudio | None = None
        self.imagebind_vision: ImageBindVision | None = None
        if config.audio_encoder is not None and config.audio_qformer is not None:
            self.audio_encoder = ImageBindAudio(config.audio_encoder)
            if config.audio_encoder.vision is not None:
                self.imagebind_vision = ImageBindVision(config.audio_encoder)
            self.audio_position_embedding = nn.Embedding(config.num_audio_positions, config.audio_encoder.out_dim)
            self.audio_qformer = QFormer(config.audio_qformer)
            self.audio_proj = nn.Linear(config.audio_qformer.hidden, d_llm)
        if config.standardize_media_features:
            audio_dim = config.audio_encoder.out_dim if config.audio_encoder is not None else None
            self.media_standardizer = MediaStandardizer(qf.hidden, audio_dim)
        self.llm = llm if llm is not None else build_llm(config)
        self._init_media_weights()

    def _init_media_weights(self) -> None:
        """Official initialisation of what is not loaded from files: queries and token tables ~ N(0, 0.02)."""
        for name, param in self.named_parameters():
            if name.startswith("llm."):
                continue
            if name.endswith(("query_tokens", "cls_token", "pos_embed")):
                nn.init.normal_(param, std=0.02)

    # ---- convenience -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.video_proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.video_proj.weight.dtype

    def media_modules(self) -> dict[str, nn.Module]:
        """Every module except the LLM, by attribute name (what `model.safetensors` stores)."""
        return {name: m for name, m in self.named_children() if name != "llm"}

    # ---- vision-language branch ----------------------------------------------------------
    def frame_features(self, video: torch.Tensor, return_intermediates: bool = False):
        """Frozen part of the VL branch: (B, 3, T, H, W) frames -> image Q-Former output (B, T, Q, Hq).

        This is what the frozen-feature cache stores; `video_from_frame_features` does the rest.
        """
        if video.dim() != 5:
            raise ValueError(f"expected video (B, 3, T, H, W), got shape {tuple(video.shape)}")
        b, _, t, h, w = video.shape
        video = video.to(device=self.device, dtype=self.dtype)
        frames = video.permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w)
        vit, ln = self.vision(frames, return_vit=True)
        image_q = self.image_qformer(ln)  # (B*T, Q, Hq)
        feats = image_q.view(b, t, *image_q.shape[1:])
        if return_intermediates:
            return feats, {"vit_features": vit, "ln_vision": ln, "image_qformer_out": image_q}
        return feats

    def video_from_frame_features(self, feats: torch.Tensor) -> MediaEmbeddings:
        """Trainable part of the VL branch: (B, T, Q, Hq) -> + frame position -> video Q-Former -> (B, Q_video, D)."""
        b, t, q, hq = feats.shape
        if t > self.config.max_frame_pos:
            raise ValueError(f"{t} frames exceed max_frame_pos={self.config.max_frame_pos}")
        feats = feats.to(device=self.device, dtype=self.dtype)
        if self.config.standardize_media_features:
            feats = self.media_standardizer.video(feats)
        positions = self.frame_position_embedding(torch.arange(t, device=feats.device))  # (T, Hq)
        frame_tokens = (feats + positions[None, :, None, :]).reshape(b, t * q, hq)
        video_q = self.video_qformer(frame_tokens)
        out = self.video_proj(video_q)
        return MediaEmbeddings(out, {"frame_tokens_with_pos": frame_tokens, "video_qformer_out": video_q, "llm_embeds": out})

    def encode_video(self, video: torch.Tensor, return_intermediates: bool = False) -> MediaEmbeddings:
        """(B, 3, T, H, W) normalised frames -> (B, Q_video, D) LLM embeddings. An image is T = 1."""
        if video.dim() == 5 and video.shape[2] > self.config.max_frame_pos:
            raise ValueError(f"{video.shape[2]} frames exceed max_frame_pos={self.config.max_frame_pos}")
        feats, inter = self.frame_features(video, return_intermediates=True)
        out = self.video_from_frame_features(feats)
        if return_intermediates:
            out.intermediates.update(inter)
        else:
            out.intermediates = {}
        return out

    def encode_image(self, image: torch.Tensor, return_intermediates: bool = False) -> MediaEmbeddings:
        """(B, 3, H, W) or (B, 3, 1, H, W) normalised image -> (B, Q_video, D): a one-frame video."""
        if image.dim() == 4:
            image = image.unsqueeze(2)
        return self.encode_video(image, return_intermediates)

    # ---- audio-language branch -----------------------------------------------------------
    def _require_audio(self) -> ImageBindAudio:
        if self.audio_encoder is None:
            raise ValueError("this model has no audio branch (config.audio_encoder is null)")
        return self.audio_encoder

    def _audio_qformer_path(self, embeds: torch.Tensor, inter: dict[str, torch.Tensor] | None) -> MediaEmbeddings:
        """(B, S, O) ImageBind embeddings -> + position S -> audio Q-Former -> (B, Q_audio, D).

        `inter`: None to skip intermediates, else a dict that receives them (returned in the output).
        """
        s = embeds.shape[1]
        if s > self.config.num_audio_positions:
            raise ValueError(f"{s} audio clips/frames exceed the {self.config.num_audio_positions} audio positions")
        if self.config.standardize_media_features:
            embeds = self.media_standardizer.audio(embeds)
        positions = self.audio_position_embedding(torch.arange(s, device=embeds.device))
        qformer_input = embeds + positions[None]
        audio_q = self.audio_qformer(qformer_input)
        out = self.audio_proj(audio_q)
        if inter is None:
            return MediaEmbeddings(out, {})
        inter.update({"qformer_input": qformer_input, "audio_qformer_out": audio_q, "llm_embeds": out})
        return MediaEmbeddings(out, inter)

    def encode_audio(self, audio: torch.Tensor, return_intermediates: bool = False) -> MediaEmbeddings:
        """(B, S, 1, mel, frames) normalised fbank clips -> (B, Q_audio, D)."""
        encoder = self._require_audio()
        if audio.dim() != 5:
            raise ValueError(f"encode_audio expects (B, S, 1, mel, frames), got shape {tuple(audio.shape)}")
        b, s = audio.shape[:2]
        audio = audio.to(device=self.device, dtype=self.dtype)
        res = encoder(audio.flatten(0, 1), return_intermediates=True)
        embeds = res["embed"].view(b, s, -1)
        inter = None
        if return_intermediates:
            inter = {"imagebind_tokens": res["tokens"], "imagebind_trunk_out": res["trunk_out"],
                     "imagebind_feature": res["feature"].view(b, s, -1), "imagebind_embed": embeds}
        return self._audio_qformer_path(embeds, inter)

    def imagebind_frame_embeddings(self, frames: torch.Tensor, return_intermediates: bool = False):
        """Frozen part of the official AL training path: (B, T, 3, H, W) -> ImageBind vision embeddings (B, T, O)."""
        self._require_audio()
        if self.imagebind_vision is None:
            raise ValueError("this model has no ImageBind vision encoder (config.audio_encoder.vision is null)")
        if frames.dim() == 4:
            frames = frames.unsqueeze(1)
        b, t = frames.shape[:2]
        frames = frames.to(device=self.device, dtype=self.dtype)
        res = self.imagebind_vision(frames.flatten(0, 1), return_intermediates=True)
        embeds = res["embed"].view(b, t, -1)
        if return_intermediates:
            return embeds, {"imagebind_tokens": res["tokens"], "imagebind_feature": res["feature"].view(b, t, -1),
                            "imagebind_embed": embeds}
        return embeds

    def audio_clip_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        """Frozen half of the AL branch on real audio: (B, S, 1, mel, frames) -> ImageBind audio embeddings (B, S, O)."""
        encoder = self._require_audio()
        b, s = audio.shape[:2]
        return encoder(audio.to(device=self.device, dtype=self.dtype).flatten(0, 1)).view(b, s, -1)

    def audio_from_embeddings(self, embeds: torch.Tensor) -> MediaEmbeddings:
        """Trainable part of the AL branch: (B, S, O) ImageBind embeddings -> (B, Q_audio, D)."""
        self._require_audio()
        return self._audio_qformer_path(embeds.to(device=self.device, dtype=self.dtype), None)

    def encode_frames_for_audio_branch(self, frames: torch.Tensor, return_intermediates: bool = False) -> MediaEmbeddings:
        """Official AL training path: (B, T, 3, H, W) frames through ImageBind *vision* -> audio Q-Former."""
        embeds, inter = self.imagebind_frame_embeddings(frames, return_intermediates=True)
        return self._audio_qformer_path(embeds, inter if return_intermediates else None)

    # ---- splicing into the LLM -------------------------------------------------------------
    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(ids.to(self.device))

    def caption_inputs(
        self, media: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor, bos_id: int, pad_id: int,
        prompt_ids: tuple[list[int], list[int]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Caption path: [BOS] + (prompt before) + media (B,N,D) + (prompt after) + caption tokens.

        `prompt_ids` are the two halves of one prompt split at `<ImageHere>` (official: one random prompt for
        the whole batch). Returns (embeds, mask, labels); only caption tokens are targets.
        """
        dev = self.device
        b = media.shape[0]
        if prompt_ids is not None:
            before, after = (self.embed_tokens(torch.tensor([ids], dtype=torch.long, device=dev)).expand(b, -1, -1)
                             for ids in prompt_ids)
            media = torch.cat([before, media.to(before.dtype), after], dim=1)
        n = media.shape[1]
        text_ids, text_mask = text_ids.to(dev), text_mask.to(dev)
        bos = self.embed_tokens(torch.full((b, 1), bos_id, dtype=torch.long, device=dev))
        embeds = torch.cat([bos, media.to(bos.dtype), self.embed_tokens(text_ids)], dim=1)
        ones = torch.ones(b, 1 + n, dtype=text_mask.dtype, device=dev)
        mask = torch.cat([ones, text_mask], dim=1)
        text_labels = text_ids.masked_fill(text_ids == pad_id, IGNORE_INDEX)
        labels = torch.cat([torch.full((b, 1 + n), IGNORE_INDEX, dtype=torch.long, device=dev), text_labels], dim=1)
        return embeds, mask, labels

    def instruct_inputs(self, media: torch.Tensor | list[torch.Tensor], input_ids: torch.Tensor,
                        media_token_id: int) -> torch.Tensor:
        """Instruction path: each row holds runs of consecutive `<ImageHere>` ids that media tokens replace.

        `media` is one (B, N, D) tensor (official: one run of N), or a list of them in prompt order
        (our audio+video extension: e.g. a run of 8 audio tokens, then a run of 32 video tokens).
        """
        media = [media] if isinstance(media, torch.Tensor) else list(media)
        want = [m.shape[1] for m in media]
        input_ids = input_ids.to(self.device)
        is_media = input_ids == media_token_id
        for row in range(input_ids.shape[0]):
            runs = _runs(is_media[row])
            if runs != want:
                expected = " + ".join(str(n) for n in want)
                found = " + ".join(str(n) for n in runs) or "none"
                raise ValueError(f"row {row}: expected {expected} consecutive media placeholder tokens, found {found}")
        embeds = self.embed_tokens(input_ids.masked_fill(is_media, 0))
        merged = torch.cat([m.to(embeds.dtype) for m in media], dim=1)
        return embeds.masked_scatter(is_media.unsqueeze(-1), merged)

    def lm_loss(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean shifted cross-entropy of the LLM over labels != -100 (what `llm(..., labels=)` returns).

        When the LLM is a plain decoder + output head, the head runs only at the labelled positions: instruction
        samples label a few answer tokens of a few hundred, and the vocabulary projection and log-softmax over
        every position are the largest part of a step (SmolLM2-135M, 49k vocabulary: a step takes half the time).
        A Llama-architecture decoder runs its last layer only there too (`label_decoder`; the tiny world model's
        2-layer LLM: forward + backward 1.5x faster).
        """
        mask, labels = attention_mask.to(self.device), labels.to(self.device)
        parts = _decoder_and_head(self.llm)
        if parts is None:
            return self.llm(inputs_embeds=inputs_embeds, attention_mask=mask, labels=labels).loss
        decoder, head = parts
        targets = labels[:, 1:]
        keep = targets != -100
        compiled = self.__dict__.get("_compiled_decoder")
        compiled = compiled[1] if compiled is not None and compiled[0] is decoder else None
        at_labels = self.last_layer_at_labels and label_decoder.supports(decoder)  # (then a compiled decoder is
        # a compiled LabelDecoder: compile_decoder decides alike)
        if at_labels and bool(keep.any()):
            rows, cols, slot, width = label_decoder.label_positions(nn.functional.pad(keep, (0, 1)))
            run = compiled if compiled is not None else label_decoder.LabelDecoder(decoder)
            hidden = run(inputs_embeds, mask, rows, cols, slot, width)
        else:  # (no label at all: the plain decoder, whose empty loss is NaN as before)
            run = compiled if compiled is not None and not at_labels else decoder
            hidden = run(inputs_embeds=inputs_embeds, attention_mask=mask).last_hidden_state[:, :-1][keep]
        return nn.functional.cross_entropy(head(hidden).float(), targets[keep])

    def compile_decoder(self, enable: bool = True) -> bool:
        """Run `lm_loss`'s LLM decoder through `torch.compile` (dynamic shapes: one compile serves every padded
        length), or drop the compiled one. Eager's numbers to float rounding (without dropout in the decoder, e.g.
        LoRA dropout > 0, whose compiled masks are drawn differently); the tiny world model's forward +
        backward runs 1.34-1.40x faster on CPU (fused RMSNorm, rotary, LoRA and SwiGLU element-wise work).
        Returns whether a compiled decoder is in use (False when the LLM has no plain decoder + head, e.g.
        FSDP-sharded). Kept out of the module tree, so state dicts and saved folders do not change."""
        self.__dict__.pop("_compiled_decoder", None)
        parts = _decoder_and_head(self.llm) if enable else None
        if parts is not None:
            decoder = parts[0]
            at_labels = self.last_layer_at_labels and label_decoder.supports(decoder)
            run = label_decoder.LabelDecoder(decoder) if at_labels else decoder
            self.__dict__["_compiled_decoder"] = (decoder, torch.compile(run, dynamic=True))
        return parts is not None

    def context_embeds(self, segment_ids: list[torch.Tensor], media: list[torch.Tensor]) -> torch.Tensor:
        """Chat prompt: text segments interleaved with media embeddings, in order -> (1, L, D)."""
        if len(segment_ids) != len(media) + 1:
            raise ValueError(f"{len(segment_ids)} text segments need {len(segment_ids) - 1} media, got {len(media)}")
        parts: list[torch.Tensor] = []
        for i, ids in enumerate(segment_ids):
            ids = ids.view(1, -1)
            parts.append(self.embed_tokens(ids))
            if i < len(media):
                parts.append(media[i].to(parts[-1].dtype).view(1, *media[i].shape[-2:]))
        return torch.cat(parts, dim=1)

    # ---- persistence -----------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, folder: str | Path, dtype: torch.dtype | str | None = None, device: str | torch.device = "cpu"
    ) -> VideoLLaMA:
        """Load a model folder written by `videollama convert` or `save_pretrained` (strict: names and shapes)."""
        from videollama.checkpoint.folder import LLM_DIR, read_config, read_media_state

        folder = Path(folder)
        config = read_config(folder)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        dtype = dtype or getattr(torch, config.llm.dtype)
        llm_path = folder / LLM_DIR
        if not (llm_path / "config.json").exists():
            raise CheckpointError(f"{folder}: missing the LLM subfolder '{LLM_DIR}/'")
        try:
            llm = AutoModelForCausalLM.from_pretrained(llm_path, dtype=dtype, **_quantization_kwargs(config))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{llm_path}: cannot load the LLM ({str(exc).splitlines()[0]})") from exc
        with torch.device("meta"):
            model = cls(config, llm=llm)
        expected = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("llm.")}
        state = read_media_state(folder, expected)
        model.load_state_dict(state, strict=False, assign=True)  # strictness checked by read_media_state
        model.llm_source = llm_path
        for module in model.media_modules().values():
            module.to(dtype=dtype)
        return model.to(device).eval()

    def save_pretrained(self, folder: str | Path, overwrite: bool = True) -> Path:
        """Write config.json, the media weights (sharded safetensors) and `llm/` atomically."""
        from videollama.checkpoint.files import atomic_dir
        from videollama.checkpoint.folder import CONFIG_NAME, LLM_DIR, TOKENIZER_FILES, write_index, write_shards

        with atomic_dir(folder, overwrite=overwrite) as tmp:
            weight_map: dict[str, str] = {}
            for name, module in self.media_modules().items():
                state = {f"{name}.{k}": v.detach().cpu() for k, v in module.state_dict().items()}
                write_shards(tmp, name, state, weight_map)
            write_index(tmp, weight_map)
            self.llm.save_pretrained(tmp / LLM_DIR, safe_serialization=True)
            source = getattr(self, "llm_source", None)
            if source is not None:
                for fname in TOKENIZER_FILES:
                    if (Path(source) / fname).exists():
                        shutil.copy2(Path(source) / fname, tmp / LLM_DIR / fname)
            self.config.to_json(tmp / CONFIG_NAME)
        return Path(folder)


def _decoder_and_head(llm: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """(decoder, output head) of a causal LM whose logits are just `head(decoder(...))`, else None: peft wrappers
    are looked through; FSDP-sharded LLMs (their forward gathers the head) and LLMs that scale or cap their
    logits (Gemma 2, Cohere) take the regular path."""
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    if any(hasattr(m, "unshard") for m in (llm, base)):  # FSDP2-wrapped
        return None
    cfg = getattr(base, "config", None)
    if getattr(cfg, "final_logit_softcapping", None) is not None or getattr(cfg, "logit_scale", None) is not None:
        return None
    get_decoder, get_head = getattr(base, "get_decoder", None), getattr(base, "get_output_embeddings", None)
    decoder, head = (get_decoder() if get_decoder else None), (get_head() if get_head else None)
    if decoder is None or head is None or decoder is base:
        return None
    return decoder, head


def _quantization_kwargs(config: VideoLLaMAConfig) -> dict:
    """8-/4-bit LLM loading through bitsandbytes (optional extra `quant`)."""
    if config.llm.load_in == "none":
        return {}
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"llm.load_in={config.llm.load_in} needs bitsandbytes: pip install 'videollama[quant]'") from exc
    from transformers import BitsAndBytesConfig

    if config.llm.load_in == "8bit":
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=getattr(torch, config.llm.dtype))}
