"""Stage-2 instruction file of a generated world: `python recipes/world/prepare_instruct.py WORLD`.

Writes WORLD/videochat/videochat_instruct_all.json (VideoChat format: [{"video", "QA": [{"q", "a"}]}]): the
world's own videochat_instruct.json asks the description and up to 4 of the valid questions per video; this
file asks, per training video, the description and *every* valid question (from the video's ground-truth
timeline, `world.questions.video_questions`), each question that has choices also in the multiple-choice form
the `world` eval uses (`evaluation.matching.format_mc_prompt`, answer = the option's text), spread over records
of at most `--per-record` QA turns in a seeded random order. Only the training world is read: nothing of the
held-out world (another seed, held-out (shape, colour) pairs) is used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from videollama.evaluation.matching import format_mc_prompt
from videollama.world.questions import video_questions
from videollama.world.scene import rng_for

DESCRIBE = "Describe what you see and hear in the video."


def prepare(world: str | Path, per_record: int = 3, seed: int = 0, out_name: str = "videochat_instruct_all.json") -> Path:
    world = Path(world)
    opts = json.loads((world / "manifest.json").read_text())["options"]
    base = json.loads((world / "videochat" / "videochat_instruct.json").read_text())
    records = []
    for k, rec in enumerate(base):
        scene = json.loads((world / "videos" / rec["video"].replace(".mp4", ".json")).read_text())
        rng = np.random.default_rng([seed, k])
        qs = video_questions(scene, rng_for(opts["seed"], opts["split"], scene["index"], 2), opts["speech"])
        pairs = [{"q": DESCRIBE, "a": scene["caption"]}]
        for q in qs:
            pairs.append({"q": q["question"], "a": q["answer"]})
            if q.get("choices"):
                options = [q["choices"][i] for i in rng.permutation(len(q["choices"]))]
                pairs.append({"q": format_mc_prompt(q["question"], options), "a": q["answer"]})
        order = rng.permutation(len(pairs))
        for s in range(0, len(order), per_record):
            records.append({"video": rec["video"], "QA": [pairs[i] for i in order[s:s + per_record]]})
    out = world / "videochat" / out_name
    out.write_text(json.dumps(records, indent=0))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("world")
    ap.add_argument("--per-record", type=int, default=3)
    a = ap.parse_args()
    p = prepare(a.world, a.per_record)
    print(f"{p}: {len(json.loads(p.read_text()))} records")
