"""Benchmarks for videollama: open-ended QA (MSVD/MSRVTT/ActivityNet-QA), Video-ChatGPT's generative benchmark,
multiple choice (MVBench, NExT-QA) and the synthetic world's question sets. See docs/evaluation.md.

```python
from videollama.evaluation import EvalConfig, run_eval
summary = run_eval(EvalConfig(task="msvd_qa", model="models/videollama-7b", data="msvd/test_qa.json",
                              media_root="msvd/videos", out="runs/msvd"))
```
"""

from __future__ import annotations

from videollama.evaluation.runner import EvalConfig, Evaluation, run_eval
from videollama.evaluation.tasks import TASKS, get_task

__all__ = ["EvalConfig", "Evaluation", "run_eval", "TASKS", "get_task"]
