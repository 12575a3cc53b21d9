"""Every client mistake and every limit gets a 4xx/5xx OpenAI-style error body, and the server stays up."""

from __future__ import annotations

import os
import threading
import time

import pytest

from tests.serving.test_api import GREEDY, answer, image, user, video


def error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


def chat(client, messages, **extra):
    return client.post("/v1/chat/completions", json={**GREEDY, "messages": messages, **extra})


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b'{"messages": "hi"}', b'{"model": "tiny"}', b'{"model": "tiny", "messages": []}',
    b'{"model": "tiny", "messages": [{"role": "wizard", "content": "hi"}]}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "hologram", "x": 1}]}]}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": 7}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}',
])
def test_malformed_requests_are_400(client, body) -> None:
    err = error(client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"}), 400)
    assert err["type"] == "invalid_request_error"


def test_unknown_model_is_404(client) -> None:
    err = error(chat(client, [user("hi")], model="gpt-4o"), 404, "model_not_found")
    assert err["param"] == "model" and "gpt-4o" in err["message"]


@pytest.mark.parametrize("messages, extra, param", [
    ([user("a", video("example.mp4")), {"role": "assistant", "content": "b"}, user("c", image("red.png"))], {},
     "messages[2]"),
    ([{"role": "user", "content": [video("example.mp4"), image("red.png")]}], {}, "messages[0]"),
    ([{"role": "assistant", "content": "hi"}, user("q")], {}, "messages[0]"),
    ([user("q"), {"role": "assistant", "content": "a"}], {}, "messages"),
    ([{"role": "user", "content": "q"}, {"role": "tool", "content": "x"}], {}, "messages[1]"),
    ([{"role": "user", "content": "   "}], {}, "messages"),
    ([{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "red.png"}}]}], {}, "messages[0]"),
    ([user("q")], {"n": 2}, "n"),
    ([user("q")], {"max_tokens": 100_000}, "max_tokens"),
    ([user("q")], {"max_completion_tokens": 100_000}, "max_completion_tokens"),
    ([user("q")], {"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ([user("q")], {"presence_penalty": 0.5}, "presence_penalty"),
    ([user("q")], {"logprobs": True}, "logprobs"),
])
def test_unsupported_requests_are_400(client, messages, extra, param) -> None:
    assert error(chat(client, messages, **extra), 400)["param"] == param


def test_errors_before_streaming_are_json_not_sse(client) -> None:
    resp = chat(client, [user("q", video("missing.mp4"))], stream=True)
    error(resp, 400, "media_not_found")
    assert resp.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("url, status, code", [
    ("missing.mp4", 400, "media_not_found"),
    ("sub", 400, "media_not_found"),
    ("../outside/secret.png", 403, "media_path_forbidden"),
    ("sub/../../x.png", 403, "media_path_forbidden"),
    ("/etc/passwd", 403, "media_path_forbidden"),
    ("file:///etc/passwd", 403, "media_path_forbidden"),
    ("http://127.0.0.1:9/clip.mp4", 400, "remote_urls_disabled"),
    ("https://example.com/clip.mp4", 400, "remote_urls_disabled"),
    ("ftp://example.com/clip.mp4", 400, "invalid_media_url"),
    ("", 400, "invalid_media_url"),
])
def test_bad_media_references(client, url, status, code) -> None:
    error(chat(client, [user("q", video(url))]), status, code)


def test_absolute_path_outside_root_is_403(client, outside_file) -> None:
    err = error(chat(client, [user("q", image(str(outside_file)))]), 403, "media_path_forbidden")
    assert err["param"] is None or "messages" in err["param"]


def test_symlink_out_of_the_root_is_403(make_client, tmp_path, outside_file, media_root) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside_file, root / "link.png")
    os.symlink(media_root / "red.png", root / "other.png")  # another folder is "outside" too
    client = make_client(media_root=root)
    error(chat(client, [user("q", image("link.png"))]), 403, "media_path_forbidden")
    error(chat(client, [user("q", image("other.png"))]), 403, "media_path_forbidden")
    (root / "real.png").write_bytes((media_root / "red.png").read_bytes())
    os.symlink(root / "real.png", root / "alias.png")
    assert answer(chat(client, [user("q", image("alias.png"))]))  # links that stay inside are fine


def test_no_media_root_means_no_local_files(make_client) -> None:
    client = make_client(media_root=None)
    error(chat(client, [user("q", video("example.mp4"))]), 403, "media_root_not_set")


def test_corrupt_and_wrong_media_name_the_problem(client, media_root) -> None:
    err = error(chat(client, [user("q", video("broken.mp4"))]), 400)
    assert err["code"] in ("corrupt_media", "unsupported_media", "invalid_media")
    assert "broken.mp4" in err["message"] and str(media_root) not in err["message"]
    err = error(chat(client, [user("q", image("tone.wav"))]), 400, "unsupported_media")  # a wav is no image
    assert "tone.wav" in err["message"]
    assert answer(chat(client, [user("q", image("red.png"))]))  # still serving


def test_api_key(make_client) -> None:
    client = make_client(api_key="s3cret")
    error(client.get("/v1/models"), 401, "invalid_api_key")
    error(client.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    error(chat(client, [user("q")]), 401)
    ok = {"Authorization": "Bearer s3cret"}
    assert client.get("/v1/models", headers=ok).status_code == 200
    assert client.post("/v1/chat/completions", headers=ok, json={**GREEDY, "messages": [user("q")]}).status_code == 200
    assert client.get("/health").status_code == 200  # liveness stays open


def test_body_size_limit_is_413(make_client) -> None:
    client = make_client(max_body_mb=0.01)
    err = error(chat(client, [user("x" * 20_000)]), 413, "request_too_large")
    assert "limit" in err["message"]

    def chunks():  # no Content-Length: counted while reading
        for _ in range(20):
            yield b" " * 1000

    resp = client.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    error(resp, 413, "request_too_large")
    assert answer(chat(client, [user("small")]))


def test_media_duration_limit(make_client) -> None:
    client = make_client(max_media_seconds=2)
    err = error(chat(client, [user("q", video("example.mp4"))]), 400, "media_too_long")
    assert "4.0 s" in err["message"] and "example.mp4" in err["message"]
    assert answer(chat(client, [user("q", image("red.png"))]))  # images have no duration


def test_unknown_route_and_method(client) -> None:
    error(client.get("/v2/nothing"), 404)
    error(client.get("/v1/chat/completions"), 405)


# ---------------------------------------------------------------------------------------------- queue / timeout
def _wait(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_queue_full_is_429_then_recovers(make_client, serve_pipe) -> None:
    client = make_client(max_concurrent=1, queue_size=1)
    engine = client.app.state.engine
    results: list = []
    request = {**GREEDY, "max_tokens": 2, "messages": [user("q")]}
    with serve_pipe._lock:  # the model is "busy": the first job blocks, the second waits in the queue
        threads = [threading.Thread(target=lambda: results.append(client.post("/v1/chat/completions", json=request)))
                   for _ in range(2)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        _wait(lambda: engine.pending == 2)
        err = error(client.post("/v1/chat/completions", json=request), 429, "queue_full")
        assert err["type"] == "rate_limit_error"
    for t in threads:
        t.join(30)
    assert [r.status_code for r in results] == [200, 200]
    _wait(lambda: engine.pending == 0)
    assert answer(client.post("/v1/chat/completions", json=request)) is not None


def test_request_timeout_is_504_and_frees_the_worker(make_client, serve_pipe) -> None:
    client = make_client(request_timeout=0.5)
    engine = client.app.state.engine
    with serve_pipe._lock:
        err = error(chat(client, [user("q")], max_tokens=2), 504, "timeout")
        assert "0.5" in err["message"]
    _wait(lambda: engine.pending == 0)  # the cancelled job stops at once
    assert answer(chat(client, [user("q")], max_tokens=2)) is not None


def test_stream_timeout_mid_generation_sends_error_event(make_client, serve_pipe) -> None:
    from tests.serving.test_api import sse_events

    client = make_client(request_timeout=1.0)
    engine = client.app.state.engine
    gate = threading.Event()
    original = serve_pipe.generate

    def slow_generate(*args, **kwargs):  # hold generation until the request deadline has passed
        gate.wait(5)
        return original(*args, **kwargs)

    serve_pipe.generate = slow_generate
    try:
        resp = chat(client, [user("q")], stream=True)  # headers go out once the prompt is ready
    finally:
        gate.set()
        del serve_pipe.generate
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "timeout"
    _wait(lambda: engine.pending == 0)


def test_internal_errors_are_500_json_and_the_server_stays_up(client, serve_pipe, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("kaput")

    monkeypatch.setattr(serve_pipe, "generate", boom)
    err = error(chat(client, [user("q")]), 500, "internal_error")
    assert err["type"] == "server_error"
    monkeypatch.undo()
    assert answer(chat(client, [user("q")])) is not None


# ---------------------------------------------------------------------------------------------- remote URLs
@pytest.fixture
def loopback_http(media_root):
    """A plain HTTP file server over the media root on a loopback port (no outside network)."""
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(media_root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_remote_urls_when_allowed(make_client, loopback_http) -> None:
    client = make_client(allow_remote_urls=True, media_root=None)
    assert answer(chat(client, [user("q", image(f"{loopback_http}/red.png"))]))
    error(chat(client, [user("q", image(f"{loopback_http}/missing.png"))]), 400, "media_download_failed")
    small = make_client(allow_remote_urls=True, max_media_mb=0.01)
    error(chat(small, [user("q", video(f"{loopback_http}/example.mp4"))]), 413, "media_too_large")
