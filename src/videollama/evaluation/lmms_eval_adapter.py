"""An lmms-eval model adapter, so `lmms-eval --model videollama --model_args pretrained=DIR` can run our model.

lmms-eval is NOT a dependency of videollama and is not installed in the project environment: its current release
(0.7.3) requires torchvision and timm outright and pins `av<16` (see docs/evaluation.md, "lmms-eval"). This module
therefore imports it lazily; importing the module without lmms-eval works, and only `register()` /
`VideoLLaMALMMS` need it. Registration, once lmms-eval is installed:
- the entry point group `lmms_eval.models` (add to pyproject:
  `[project.entry-points."lmms_eval.models"]` `videollama = "videollama.evaluation.lmms_eval_adapter:manifest"`), or
- `python -m videollama.evaluation.lmms_eval_adapter --model videollama --model_args pretrained=DIR --tasks ...`
  (registers the model, then runs lmms-eval's own command line).

Implemented: `generate_until` (one video/image per request; gen_kwargs max_new_tokens, temperature (0 = greedy),
top_p, num_beams, until) and `loglikelihood` (log-probability of the continuation after the media prompt; greedy flag).
`generate_until_multi_round` is not implemented (no lmms-eval video task we target needs it).
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

MODEL_NAME = "videollama"
CLASS_PATH = "videollama.evaluation.lmms_eval_adapter.VideoLLaMALMMS"


def lmms_eval_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("lmms_eval") is not None


def manifest():
    """Entry-point payload for lmms-eval >= 0.7 (`lmms_eval.models` group)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=CLASS_PATH)


def register() -> None:
    """Make `--model videollama` known to the lmms-eval in this process (new and old registries)."""
    try:
        from lmms_eval.models import MODEL_REGISTRY_V2  # lmms-eval >= 0.7

        MODEL_REGISTRY_V2.register_manifest(manifest(), overwrite=True)
    except ImportError:  # older lmms-eval: the decorator registry
        from lmms_eval.api.registry import register_model

        register_model(MODEL_NAME)(_adapter_class())


def _media_path(visual: Any, tmpdir: str) -> str | None:
    """A file path for one lmms-eval visual: a path string as is, a PIL image saved as PNG."""
    if visual is None:
        return None
    if isinstance(visual, (str, os.PathLike)):
        return str(visual)
    if isinstance(visual, dict) and visual.get("path"):
        return str(visual["path"])
    if hasattr(visual, "save"):  # PIL.Image
        path = os.path.join(tmpdir, f"img_{id(visual)}.png")
        visual.convert("RGB").save(path)
        return path
    raise TypeError(f"videollama adapter: unsupported visual of type {type(visual).__name__}")


def _clean_context(text: str) -> str:
    for tag in ("<image>", "<video>", "<audio>"):
        text = text.replace(tag, "")
    return text.strip()


def _adapter_class():
    from lmms_eval.api.instance import Instance  # noqa: F401 - the interface we implement
    from lmms_eval.api.model import lmms

    class VideoLLaMALMMS(lmms):
        """lmms-eval `lmms` over a `VideoLLaMAPipeline` (one GPU; no data parallelism)."""

        def __init__(self, pretrained: str, device: str = "cuda", dtype: str | None = None, batch_size: int | str = 1,
                     max_frames_num: int = 8, use_audio: bool | str = True, **kwargs: Any) -> None:
            super().__init__()
            from videollama.inference.pipeline import VideoLLaMAPipeline

            if isinstance(use_audio, str):
                use_audio = use_audio.lower() not in ("0", "false", "no")
            self.pipe = VideoLLaMAPipeline.from_pretrained(pretrained, device=device, dtype=dtype,
                                                           n_frames=int(max_frames_num))
            self.use_audio = bool(use_audio)
            self.batch_size_per_gpu = int(batch_size)
            self._rank, self._world_size = 0, 1
            self._tmp = tempfile.TemporaryDirectory(prefix="videollama-lmms-")

        def _visual(self, req) -> str | None:
            args = req.args
            doc_to_visual, doc_id, task, split = args[2], args[3], args[4], args[5]
            visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if callable(doc_to_visual) else doc_to_visual
            visuals = [v for v in (visuals or []) if v is not None]
            if len(visuals) > 1:
                print(f"videollama adapter: {len(visuals)} visuals for one request; using the first", file=sys.stderr)
            return _media_path(visuals[0], self._tmp.name) if visuals else None

        def generate_until(self, requests) -> list[str]:
            from tqdm.auto import tqdm

            out = []
            for req in tqdm(requests, desc="videollama generate", disable=self.rank != 0):
                context, gen_kwargs = req.args[0], dict(req.args[1] or {})
                until = gen_kwargs.pop("until", None) or []
                until = [until] if isinstance(until, str) else list(until)
                temperature = float(gen_kwargs.get("temperature", 0) or 0)
                settings: dict[str, Any] = {"max_new_tokens": int(gen_kwargs.get("max_new_tokens", 300))}
                if gen_kwargs.get("num_beams"):
                    settings["num_beams"] = int(gen_kwargs["num_beams"])
                if temperature > 0:
                    settings.update(do_sample=True, temperature=temperature,
                                    top_p=float(gen_kwargs.get("top_p") or 0.9))
                answer = self.pipe.ask(self._visual(req), _clean_context(context), use_audio=self.use_audio,
                                       greedy=temperature <= 0, **settings)
                for stop in until:
                    if stop and stop in answer:
                        answer = answer.split(stop)[0]
                out.append(answer)
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), answer)
            return out

        def loglikelihood(self, requests) -> list[tuple[float, bool]]:
            import torch

            out = []
            for req in requests:
                context, continuation = req.args[0], req.args[1]
                if callable(continuation):  # some tasks pass doc_to_target
                    continuation = continuation(self.task_dict[req.args[4]][req.args[5]][req.args[3]])
                session = self.pipe.chat(self._visual(req), use_audio=self.use_audio)
                session._prepare_turn(_clean_context(context))
                prefix = session.context_embeds()
                ids = torch.tensor([self.pipe.tokenizer.encode(str(continuation), add_bos=False)])
                model = self.pipe.model
                with torch.inference_mode():
                    cont = model.embed_tokens(ids).to(prefix.dtype)
                    logits = model.llm(inputs_embeds=torch.cat([prefix, cont], dim=1)).logits
                    n = ids.shape[1]
                    logp = torch.log_softmax(logits[0, -n - 1:-1].float(), dim=-1)
                    target = ids[0].to(logp.device)
                    total = float(logp.gather(1, target[:, None]).sum())
                    greedy = bool((logp.argmax(-1) == target).all())
                out.append((total, greedy))
            return out

        def generate_until_multi_round(self, requests) -> list[str]:
            raise NotImplementedError("videollama adapter: multi-round generation is not implemented")

    VideoLLaMALMMS.__module__ = __name__
    return VideoLLaMALMMS


def __getattr__(name: str):
    if name == "VideoLLaMALMMS":  # built on first access, so importing this module never needs lmms-eval
        cls = _adapter_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> int:
    """Register `videollama`, then hand over to lmms-eval's command line."""
    if not lmms_eval_available():
        print("error: lmms-eval is not installed (see docs/evaluation.md: it pulls torchvision and timm)", file=sys.stderr)
        return 2
    register()
    from lmms_eval.__main__ import cli_evaluate

    sys.argv = [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
    cli_evaluate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
