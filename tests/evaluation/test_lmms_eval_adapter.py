"""The lmms-eval adapter: importable without lmms-eval; exercised only where lmms-eval is installed."""

from __future__ import annotations

import pytest


def test_module_imports_without_lmms_eval():
    from videollama.evaluation import lmms_eval_adapter as m

    assert m.MODEL_NAME == "videollama" and m.CLASS_PATH.endswith("VideoLLaMALMMS")
    assert m._clean_context("<video>\nWhat is it? ") == "What is it?"
    if not m.lmms_eval_available():
        assert m.main(["--tasks", "x"]) == 2


def _exercise(m, Instance, tiny_model_dir):

    from tests.conftest import REPO_ROOT

    video = str(REPO_ROOT / "src" / "videollama" / "assets" / "example.mp4")
    model = m.VideoLLaMALMMS(pretrained=str(tiny_model_dir), device="cpu")
    model.task_dict = {"t": {"test": {0: {"video": video}}}}
    req = Instance("generate_until", ("<video>What is it?", {"max_new_tokens": 3, "until": ["\n"]},
                                      lambda doc: [doc["video"]], 0, "t", "test"), idx=0)
    assert isinstance(model.generate_until([req])[0], str)
    req = Instance("loglikelihood", ("What is it?", " a square", lambda doc: [doc["video"]], 0, "t", "test"), idx=0)
    logp, greedy = model.loglikelihood([req])[0]
    assert logp < 0 and isinstance(greedy, bool)


def test_adapter_with_lmms_eval(request):
    pytest.importorskip("lmms_eval")
    from videollama.evaluation import lmms_eval_adapter as m

    m.register()
    from lmms_eval.api.instance import Instance

    _exercise(m, Instance, request.getfixturevalue("tiny_model_dir"))


def test_adapter_against_a_stand_in_interface(monkeypatch, tiny_model_dir):
    """Without lmms-eval: the adapter's logic against minimal stand-ins of `lmms` and `Instance`."""
    import sys
    import types
    from dataclasses import dataclass, field

    if "lmms_eval" in sys.modules or __import__("importlib").util.find_spec("lmms_eval"):
        pytest.skip("the real lmms-eval is installed")

    class lmms:  # noqa: N801 - lmms-eval's name
        def __init__(self):
            self.cache_hook = types.SimpleNamespace(add_partial=lambda *a: None)

        @property
        def rank(self):
            return self._rank

    @dataclass
    class Instance:
        request_type: str
        arguments: tuple
        idx: int
        metadata: dict = field(default_factory=dict)

        @property
        def args(self):
            return self.arguments

    for name, attrs in {"lmms_eval": {}, "lmms_eval.api": {}, "lmms_eval.api.model": {"lmms": lmms},
                        "lmms_eval.api.instance": {"Instance": Instance}}.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    from videollama.evaluation import lmms_eval_adapter as m

    monkeypatch.delitem(m.__dict__, "VideoLLaMALMMS", raising=False)
    try:
        _exercise(m, Instance, tiny_model_dir)
    finally:
        m.__dict__.pop("VideoLLaMALMMS", None)
