"""Evaluation test fixtures: a tiny random model (built once), tiny generated videos, a stub judge server."""

from __future__ import annotations

import json
import re
import threading
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def write_video(path: Path, n_frames: int = 6, codec: str = "libx264", fps: int = 5) -> Path:
    """A tiny silent video (64x48) whose brightness depends on the file name."""
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    shade = sum(path.name.encode()) % 200
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (shade + 9 * i) % 256, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from videollama.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("eval-tiny") / "model", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_pipe(tiny_model_dir):
    from videollama.inference.pipeline import VideoLLaMAPipeline

    return VideoLLaMAPipeline.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def media_root(tmp_path_factory) -> Path:
    """videos/vidA.mp4, videos/v_act1.mp4 (ActivityNet prefix), videos/clipB.avi, videos/nested/0001/vidC.mp4."""
    root = tmp_path_factory.mktemp("eval-media") / "videos"
    write_video(root / "vidA.mp4")
    write_video(root / "v_act1.mp4")
    write_video(root / "clipB.avi", codec="mpeg4")
    write_video(root / "nested" / "0001" / "vidC.mp4")
    return root


class FakePipe:
    """Stands in for VideoLLaMAPipeline.ask_batch: answers from a question -> answer table; counts calls."""

    def __init__(self, answers: dict[str, str] | None = None, default: str = "I do not know", fail_after: int | None = None):
        self.answers = answers or {}
        self.default = default
        self.fail_after = fail_after
        self.calls = 0
        self.asked: list[tuple[str, str]] = []
        self.kwargs: list[dict] = []

    def ask_batch(self, requests, **kwargs):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.kwargs.append(kwargs)
        out = []
        for media, question in requests:
            self.asked.append((str(media), question))
            if not Path(media).is_file():
                from videollama.errors import MediaNotFoundError

                raise MediaNotFoundError(f"{media}: file not found")
            out.append(next((a for q, a in self.answers.items() if q in question), self.default))
        return out


class StubJudge:
    """An OpenAI-compatible /v1/chat/completions stub: canned verdicts, scripted failures, counted calls.

    QA requests get {'pred': 'yes', 'score': 4} when the predicted answer equals the correct one, else
    {'pred': 'no', 'score': 1}; criterion requests get {'score': 3}. `fail` holds HTTP statuses to return first.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.fail: list[int] = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                stub.calls += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                stub.headers.append(dict(self.headers))
                if stub.fail:
                    status = stub.fail.pop(0)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "stub failure"}}')
                    return
                user = body["messages"][-1]["content"]
                if "'pred'" in user:
                    correct = re.search(r"Correct answer: (.*)\n", user).group(1)
                    pred = re.search(r"Predicted answer: (.*)\n", user).group(1)
                    reply = "{'pred': 'yes', 'score': 4}" if correct == pred else "{'pred': 'no', 'score': 1}"
                else:
                    reply = "{'score': 3}"
                data = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                                   "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                                "finish_reason": "stop"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_judge():
    stub = StubJudge()
    try:
        yield stub
    finally:
        stub.close()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never touch the user's cache or real API keys."""
    monkeypatch.setenv("VIDEOLLAMA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("VIDEOLLAMA_JUDGE_API_KEY", raising=False)
