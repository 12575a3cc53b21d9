"""Run a benchmark: predictions (batched, resumable) -> verdicts (judge or offline, resumable) -> summary.

Files in the output folder:
- `run.json`: what identifies the run (task, model, data hash, generation settings, audio, frames); a rerun with
  different values refuses to mix results (use another --out, or --overwrite);
- `predictions.jsonl`: one record per item, appended and fsync'ed per batch; a rerun skips items already there
  (records with an "error" are retried) and tolerates a truncated last line;
- `verdicts_<scorer>.jsonl`: one verdict per item for that scorer ("offline", or "judge-<model>"), so judging
  later, or with another judge, reuses the predictions;
- `summary.json`, `summary.md`: metrics, breakdowns and everything needed to reproduce the numbers.
"""

from __future__ import annotations

import logging
import platform
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from videollama.errors import ConfigError, VideoLLaMAError
from videollama.evaluation import summary as S
from videollama.evaluation.judge import JudgeClient
from videollama.evaluation.records import append_jsonl, files_sha256, read_jsonl, write_json
from videollama.evaluation.tasks import EvalItem, Task, get_task

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"


@dataclass
class EvalConfig:
    """Everything `videollama eval` needs; `generation` holds overrides of the decoding settings."""

    task: str
    data: Path
    out: Path
    model: Path | None = None
    media_root: Path | None = None
    answers: Path | None = None
    judge_url: str | None = None
    judge_model: str | None = None
    judge_workers: int = 4
    judge_cache: Path | None = None
    limit: int | None = None
    batch_size: int = 8
    greedy: bool = True
    generation: dict[str, Any] = field(default_factory=dict)
    use_audio: bool = True
    n_frames: int = 8
    device: str = "cpu"
    dtype: str | None = None
    overwrite: bool = False
    progress: bool = True


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "judge"


class Evaluation:
    """One evaluation run; `run()` does all three stages and returns the summary dict."""

    def __init__(self, cfg: EvalConfig, pipe=None, pipe_factory: Callable[[], Any] | None = None,
                 judge: JudgeClient | None = None) -> None:
        from videollama.inference.pipeline import GenerationSettings

        self.cfg = cfg
        self.task: Task = get_task(cfg.task)
        self._pipe, self._pipe_factory = pipe, pipe_factory
        if cfg.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {cfg.batch_size}")
        if (cfg.judge_url is None) != (cfg.judge_model is None) and judge is None:
            raise ConfigError("--judge-url and --judge-model go together")
        self.settings = GenerationSettings().updated(greedy=cfg.greedy, **cfg.generation)
        if cfg.judge_url and judge is None:
            judge = JudgeClient(cfg.judge_url, cfg.judge_model, cache_dir=cfg.judge_cache)
        self.judge = judge if self.task.scorer_kind != "offline" else None
        if judge is not None and self.task.scorer_kind == "offline":
            log.warning("task %s is scored without a judge; --judge-url is ignored", cfg.task)
        self.out = Path(cfg.out)
        self._write_lock = threading.Lock()

    # ---- helpers ---------------------------------------------------------------------------------------------
    @property
    def pipe(self):
        if self._pipe is None:
            if self._pipe_factory is not None:
                self._pipe = self._pipe_factory()
            else:
                from videollama.inference.pipeline import VideoLLaMAPipeline

                if self.cfg.model is None:
                    raise ConfigError("no --model given")
                self._pipe = VideoLLaMAPipeline.from_pretrained(self.cfg.model, device=self.cfg.device,
                                                                dtype=self.cfg.dtype, n_frames=self.cfg.n_frames)
        return self._pipe

    def scorer(self) -> dict[str, Any]:
        if self.judge is not None:
            return {"kind": "judge", **self.judge.describe(), "protocol": "video-chatgpt"}
        if self.task.scorer_kind == "judge_required":
            return {"kind": "none"}
        return {"kind": "offline", "rule": "multiple-choice option parsing" if self.task.scorer_kind == "offline"
                and self.task.name != "world" else "normalised exact match or answer contained in prediction"}

    def verdicts_path(self) -> Path:
        s = self.scorer()
        return self.out / (f"verdicts_judge-{_slug(s['model'])}.jsonl" if s["kind"] == "judge" else "verdicts_offline.jsonl")

    def _identity(self, data_sha: str) -> dict[str, Any]:
        return {"task": self.task.name, "model": str(Path(self.cfg.model).resolve()) if self.cfg.model else None,
                "data_sha256": data_sha, "generation": asdict(self.settings), "use_audio": self.cfg.use_audio,
                "n_frames": self.cfg.n_frames}

    def _check_run(self, identity: dict[str, Any]) -> None:
        run_file = self.out / "run.json"
        if self.cfg.overwrite:
            for f in [self.out / PREDICTIONS, *self.out.glob("verdicts_*.jsonl"), run_file,
                      self.out / "summary.json", self.out / "summary.md"]:
                f.unlink(missing_ok=True)
        if run_file.exists():
            import json

            old = json.loads(run_file.read_text())
            differ = [k for k in identity if old.get(k) != identity[k]]
            if differ:
                raise ConfigError(f"{self.out}: holds results of a different run (differs in: {', '.join(differ)}); "
                                  "use another --out, or --overwrite to start over")
        else:
            write_json(run_file, identity)

    # ---- stage 1: predictions ----------------------------------------------------------------------------------
    def _answer(self, items: list[EvalItem]) -> list[dict[str, Any]]:
        requests = [(item.media, prompt) for item in items for prompt in item.prompts]
        kwargs = {**asdict(self.settings)}
        try:
            answers = self.pipe.ask_batch(requests, batch_size=self.cfg.batch_size, use_audio=self.cfg.use_audio,
                                          **kwargs)
        except VideoLLaMAError as exc:
            if len(items) == 1:
                return [self._record(items[0], None, str(exc))]
            log.warning("batch failed (%s); retrying its items one by one", exc)
            return [r for item in items for r in self._answer([item])]
        out, k = [], 0
        for item in items:
            out.append(self._record(item, answers[k:k + len(item.prompts)]))
            k += len(item.prompts)
        return out

    @staticmethod
    def _record(item: EvalItem, predictions: list[str] | None, error: str | None = None) -> dict[str, Any]:
        rec = {"id": item.id, "media": item.media, "question": item.question, "prompts": item.prompts,
               "predictions": predictions, "answer": item.answer, "categories": item.categories}
        if error is not None:
            rec["error"] = error
        return rec

    def predict(self, items: list[EvalItem]) -> dict[str, dict[str, Any]]:
        path = self.out / PREDICTIONS
        done = {r["id"]: r for r in read_jsonl(path, repair=True) if "id" in r}
        pending = [it for it in items if it.id not in done or done[it.id].get("predictions") is None]
        if pending:
            from tqdm.auto import tqdm

            log.info("%d of %d items to predict", len(pending), len(items))
            bar = tqdm(total=len(items), initial=len(items) - len(pending), desc=f"{self.task.name}: predict",
                       unit="q", disable=not self.cfg.progress)
            try:
                for start in range(0, len(pending), self.cfg.batch_size):
                    chunk = pending[start:start + self.cfg.batch_size]
                    records = self._answer(chunk)
                    append_jsonl(path, records)
                    done.update((r["id"], r) for r in records)
                    bar.update(len(chunk))
            finally:
                bar.close()
        return done

    # ---- stage 2: verdicts -------------------------------------------------------------------------------------
    def _verdict(self, item: EvalItem, pred: dict[str, Any], scorer_kind: str) -> dict[str, Any]:
        base = {"id": item.id, "scorer": scorer_kind}
        if pred.get("predictions") is None:
            return {**base, "correct": False if self.task.scorer_kind != "judge_required" else None,
                    "score": 0.0 if scorer_kind == "judge" and self.task.scorer_kind != "judge_required" else None,
                    "error": pred.get("error", "no prediction")}
        predictions = pred["predictions"]
        if scorer_kind == "offline":
            return {**base, **self.task.score_offline(item, predictions)}
        requests = self.task.judge_requests(item, predictions)
        replies = {name: self.judge.complete(messages) for name, messages in requests.items()}
        return {**base, **self.task.score_judged(item, predictions, replies), "judge_replies": replies}

    def score(self, items: list[EvalItem], predictions: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        kind = self.scorer()["kind"]
        if kind == "none":
            return {}
        path = self.verdicts_path()
        done = {r["id"]: r for r in read_jsonl(path, repair=True) if "id" in r}
        # a verdict of an errored prediction that has since been answered is stale
        pending = [it for it in items if it.id in predictions and (
            it.id not in done or ("error" in done[it.id]) != (predictions[it.id].get("predictions") is None))]
        if not pending:
            return done
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pending), desc=f"{self.task.name}: score ({kind})", unit="q", disable=not self.cfg.progress)
        try:
            if kind == "offline":
                verdicts = [self._verdict(it, predictions[it.id], kind) for it in pending]
                append_jsonl(path, verdicts)
                done.update((v["id"], v) for v in verdicts)
                bar.update(len(verdicts))
            else:
                with ThreadPoolExecutor(max_workers=max(1, self.cfg.judge_workers)) as pool:
                    futures = [pool.submit(self._verdict, it, predictions[it.id], kind) for it in pending]
                    try:
                        for fut in as_completed(futures):
                            v = fut.result()
                            with self._write_lock:
                                append_jsonl(path, [v])
                                done[v["id"]] = v
                            bar.update(1)
                    except BaseException:
                        for f in futures:
                            f.cancel()
                        raise
        finally:
            bar.close()
        return done

    # ---- stage 3: summary --------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        t0 = time.time()
        cfg = self.cfg
        loaded = self.task.load(Path(cfg.data), Path(cfg.media_root) if cfg.media_root else None,
                                Path(cfg.answers) if cfg.answers else None)
        if loaded.missing:
            shown = ", ".join(f"{m['id']} ({m['media']})" for m in loaded.missing[:3])
            log.warning("%d item(s) skipped: media not found under the media root, e.g. %s", len(loaded.missing), shown)
        items = loaded.items[:cfg.limit] if cfg.limit is not None else loaded.items
        if not items:
            raise ConfigError(f"{cfg.data}: no item with a media file found (check --media-root)")
        data_sha = files_sha256(loaded.files)
        self.out.mkdir(parents=True, exist_ok=True)
        self._check_run(self._identity(data_sha))
        predictions = self.predict(items)
        verdicts = self.score(items, predictions)
        selected_verdicts = [(it.categories, verdicts[it.id]) for it in items if it.id in verdicts]
        summary = self._summary(loaded, items, predictions, selected_verdicts, data_sha, time.time() - t0)
        write_json(self.out / "summary.json", summary)
        (self.out / "summary.md").write_text(S.to_markdown(summary), encoding="utf-8")
        return summary

    def _summary(self, loaded, items, predictions, selected_verdicts, data_sha, elapsed) -> dict[str, Any]:
        import torch

        import videollama

        scorer = self.scorer()
        ids = {it.id for it in items}
        preds = [p for i, p in predictions.items() if i in ids]
        return {
            "task": self.task.name,
            "description": self.task.description,
            "model": str(Path(self.cfg.model).resolve()) if self.cfg.model else None,
            "data": [str(Path(f).resolve()) for f in loaded.files],
            "data_sha256": data_sha,
            "media_root": str(Path(self.cfg.media_root).resolve()) if self.cfg.media_root else None,
            "generation": asdict(self.settings),
            "batch_size": self.cfg.batch_size,
            "use_audio": self.cfg.use_audio,
            "n_frames": self.cfg.n_frames,
            "scorer": scorer,
            "counts": {"in_data": len(loaded.items), "missing_media": len(loaded.missing), "selected": len(items),
                       "limit": self.cfg.limit, "predicted": sum(1 for p in preds if p.get("predictions") is not None),
                       "errors": sum(1 for p in preds if p.get("predictions") is None),
                       "scored": len(selected_verdicts)},
            "metrics": S.aggregate(v for _, v in selected_verdicts),
            "breakdown": S.breakdowns(self.task.breakdowns, selected_verdicts),
            "judge_stats": ({"calls": self.judge.calls, "cache_hits": self.judge.cache_hits}
                            if self.judge is not None else None),
            "missing_media": loaded.missing[:100],
            "videollama_version": videollama.__version__,
            "torch_version": torch.__version__,
            "python": platform.python_version(),
            "device": str(getattr(getattr(self._pipe, "model", None), "device", None)) if self._pipe is not None else None,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(elapsed, 1),
            "files": {"predictions": PREDICTIONS, "verdicts": self.verdicts_path().name if scorer["kind"] != "none" else None},
        }


def run_eval(cfg: EvalConfig, pipe=None, judge: JudgeClient | None = None) -> dict[str, Any]:
    """Run one evaluation (see the module docstring for the files written); returns the summary."""
    return Evaluation(cfg, pipe=pipe, judge=judge).run()


__all__ = ["EvalConfig", "Evaluation", "run_eval"]
