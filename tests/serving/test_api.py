"""The OpenAI-compatible API through FastAPI's TestClient: answers, streaming, media references, conversation."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse

import pytest

GREEDY = {"model": "tiny", "temperature": 0, "max_tokens": 6}


def user(text: str, media: dict | None = None) -> dict:
    parts = [{"type": "text", "text": text}]
    return {"role": "user", "content": parts + ([media] if media else [])}


def video(url: str) -> dict:
    return {"type": "video_url", "video_url": {"url": url}}


def image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def audio(url: str) -> dict:
    return {"type": "audio_url", "audio_url": {"url": url}}


def data_url(path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def sse_events(text: str) -> list:
    """Parse an SSE body into JSON payloads (and the final '[DONE]')."""
    assert text.endswith("data: [DONE]\n\n")
    out = []
    for frame in text.split("\n\n"):
        if frame:
            assert frame.startswith("data: ")
            payload = frame[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def store_is_empty(client, seconds: float = 5.0) -> bool:
    """The private temp folder empties once the worker has finished with the media (just after the answer)."""
    deadline = time.monotonic() + seconds
    while any(client.app.state.store.dir.iterdir()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def answer(resp) -> str:
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]["message"]["content"]


# ---------------------------------------------------------------------------------------------- basics
def test_models_health_and_openapi(client) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny"]
    assert models["data"][0]["object"] == "model"
    assert client.get("/v1/models/tiny").json()["id"] == "tiny"
    missing = client.get("/v1/models/gpt-4")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny" and health["running_or_queued"] == 0
    schema = client.get("/openapi.json").json()
    assert "/v1/chat/completions" in schema["paths"] and "/v1/models" in schema["paths"]
    assert "ChatCompletionRequest" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_video_answer_has_openai_shape_and_matches_pipeline(client, serve_pipe, media_root) -> None:
    resp = client.post("/v1/chat/completions",
                       json={**GREEDY, "messages": [user("What happens?", video("example.mp4"))]})
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "tiny"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 32 and 0 < usage["completion_tokens"] <= 6  # media positions count
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert "notices" not in body and "x-videollama-notice" not in resp.headers  # example.mp4 has audio
    expected = serve_pipe.ask(media_root / "example.mp4", "What happens?", greedy=True, max_new_tokens=6)
    assert choice["message"]["content"] == expected


def test_text_only_and_string_content(client) -> None:
    resp = client.post("/v1/chat/completions", json={**GREEDY, "messages": [{"role": "user", "content": "Hello"}]})
    assert isinstance(answer(resp), str)


def test_model_field_may_be_omitted(client) -> None:
    body = {k: v for k, v in GREEDY.items() if k != "model"}
    assert client.post("/v1/chat/completions", json={**body, "messages": [user("Hi")]}).json()["model"] == "tiny"


def test_stream_matches_non_stream(client) -> None:
    request = {**GREEDY, "max_tokens": 10, "messages": [user("Describe.", video("example.mp4"))]}
    full = client.post("/v1/chat/completions", json=request).json()
    resp = client.post("/v1/chat/completions",
                       json={**request, "stream": True, "stream_options": {"include_usage": True}})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    usage_chunk, finish_chunk = chunks[-1], chunks[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == full["usage"]
    assert finish_chunk["choices"][0]["finish_reason"] == full["choices"][0]["finish_reason"]
    assert finish_chunk["choices"][0]["delta"] == {}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-2])
    assert text == full["choices"][0]["message"]["content"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])


def test_seeded_sampling_is_reproducible(client) -> None:
    request = {"model": "tiny", "temperature": 0.8, "top_p": 0.95, "top_k": 20, "seed": 3, "max_tokens": 6,
               "messages": [user("Hi", image("red.png"))]}
    assert answer(client.post("/v1/chat/completions", json=request)) == \
        answer(client.post("/v1/chat/completions", json=request))


# ---------------------------------------------------------------------------------------------- media kinds
def test_image_request_matches_pipeline(client, serve_pipe, media_root) -> None:
    got = answer(client.post("/v1/chat/completions", json={**GREEDY, "messages": [user("Colour?", image("red.png"))]}))
    assert got == serve_pipe.ask(media_root / "red.png", "Colour?", greedy=True, max_new_tokens=6)


def test_audio_only_request(client, serve_pipe, media_root) -> None:
    got = answer(client.post("/v1/chat/completions", json={**GREEDY, "messages": [user("Sound?", audio("tone.wav"))]}))
    assert got == serve_pipe.ask(media_root / "tone.wav", "Sound?", greedy=True, max_new_tokens=6)


def test_openai_input_audio_part(client, media_root) -> None:
    part = {"type": "input_audio",
            "input_audio": {"data": base64.b64encode((media_root / "tone.wav").read_bytes()).decode(), "format": "wav"}}
    by_path = answer(client.post("/v1/chat/completions",
                                 json={**GREEDY, "messages": [user("Sound?", audio("tone.wav"))]}))
    assert answer(client.post("/v1/chat/completions", json={**GREEDY, "messages": [user("Sound?", part)]})) == by_path


def test_video_without_audio_track_reports_notice(client) -> None:
    request = {**GREEDY, "messages": [user("What?", video("silent.mp4"))]}
    resp = client.post("/v1/chat/completions", json=request)
    assert resp.status_code == 200, resp.text
    assert "audio branch skipped" in resp.headers["x-videollama-notice"]
    assert any("audio branch skipped" in n for n in resp.json()["notices"])
    streamed = client.post("/v1/chat/completions", json={**request, "stream": True})
    assert "audio branch skipped" in streamed.headers["x-videollama-notice"]
    assert "audio branch skipped" in sse_events(streamed.text)[0]["notices"][0]
    quiet = client.post("/v1/chat/completions", json={**request, "use_audio": False})
    assert quiet.status_code == 200 and "x-videollama-notice" not in quiet.headers


def test_data_url_video_equals_path_and_temp_file_is_removed(client, media_root) -> None:
    by_path = answer(client.post("/v1/chat/completions",
                                 json={**GREEDY, "messages": [user("Q", video("example.mp4"))]}))
    url = data_url(media_root / "example.mp4", "video/mp4")
    by_data = answer(client.post("/v1/chat/completions", json={**GREEDY, "messages": [user("Q", video(url))]}))
    assert by_data == by_path
    assert store_is_empty(client)  # the private temp copy is gone
    hits = client.app.state.pipe.cache_hits  # re-sending the same data (every turn of a chat) skips the encoders
    assert answer(client.post("/v1/chat/completions", json={**GREEDY, "messages": [user("Q", video(url))]})) == by_data
    assert client.app.state.pipe.cache_hits == hits + 1 and store_is_empty(client)


def test_data_url_image(client, media_root) -> None:
    url = data_url(media_root / "red.png", "image/png")
    assert answer(client.post("/v1/chat/completions", json={**GREEDY, "messages": [user("Q", image(url))]}))
    assert store_is_empty(client)


@pytest.mark.parametrize("url, status, code", [
    ("data:video/mp4;base64,@@not-base64@@", 400, "invalid_data_url"),
    ("data:video/mp4,plain-text-not-base64", 400, "invalid_data_url"),
    ("data:video/mp4;base64", 400, "invalid_data_url"),
    ("data:video/mp4;base64,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 400, None),
])
def test_bad_data_urls(client, url, status, code) -> None:
    resp = client.post("/v1/chat/completions", json={**GREEDY, "messages": [user("Q", video(url))]})
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert code is None or err["code"] == code
    assert "/tmp" not in err["message"] and str(client.app.state.store.dir) not in err["message"]
    assert store_is_empty(client)


def test_data_url_over_media_cap_is_413(make_client, media_root) -> None:
    client = make_client(max_media_mb=0.01)
    url = data_url(media_root / "example.mp4", "video/mp4")
    resp = client.post("/v1/chat/completions", json={**GREEDY, "messages": [user("Q", video(url))]})
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "media_too_large"


def test_file_urls(client, media_root) -> None:
    url = "file://" + urllib.parse.quote(str(media_root / "sub" / "red copy.png"))
    assert answer(client.post("/v1/chat/completions", json={**GREEDY, "messages": [user("Q", image(url))]}))
    absolute = str(media_root / "red.png")  # an absolute path inside the root is fine too
    assert answer(client.post("/v1/chat/completions", json={**GREEDY, "messages": [user("Q", image(absolute))]}))
    remote_host = client.post("/v1/chat/completions",
                              json={**GREEDY, "messages": [user("Q", image("file://example.com/red.png"))]})
    assert remote_host.status_code == 400


# ---------------------------------------------------------------------------------------------- conversation
def test_multi_turn_replays_history(client, serve_pipe, media_root) -> None:
    chat = serve_pipe.chat(media_root / "example.mp4")
    first = chat.ask("One?", greedy=True, max_new_tokens=4)
    second = chat.ask("Two?", greedy=True, max_new_tokens=4)
    messages = [user("One?", video("example.mp4")), {"role": "assistant", "content": first},
                {"role": "user", "content": "Two?"}]
    resp = client.post("/v1/chat/completions", json={**GREEDY, "max_tokens": 4, "messages": messages})
    assert answer(resp) == second
    assert resp.json()["usage"]["prompt_tokens"] > chat.context_embeds().shape[1] - 20  # history is in the prompt


def test_system_message_becomes_system_prompt(client, serve_pipe, media_root) -> None:
    expected = serve_pipe.ask(media_root / "red.png", "Q", system="Be brief.", greedy=True, max_new_tokens=6)
    messages = [{"role": "system", "content": "Be brief."}, user("Q", image("red.png"))]
    assert answer(client.post("/v1/chat/completions", json={**GREEDY, "messages": messages})) == expected


def test_media_in_a_later_turn_is_moved_to_the_start_with_a_notice(client) -> None:
    messages = [user("Hi"), {"role": "assistant", "content": "Hello."}, user("And this?", image("red.png"))]
    resp = client.post("/v1/chat/completions", json={**GREEDY, "messages": messages})
    assert resp.status_code == 200 and "first user message" in resp.headers["x-videollama-notice"]


def test_user_stop_strings(client) -> None:
    request = {**GREEDY, "max_tokens": 16, "messages": [user("Describe.", video("example.mp4"))]}
    full = answer(client.post("/v1/chat/completions", json=request))
    i = next(k for k in range(2, len(full)) if not full[k].isspace())
    stop = full[i:i + 2]
    expected = full[: full.find(stop)]
    resp = client.post("/v1/chat/completions", json={**request, "stop": stop}).json()
    assert resp["choices"][0]["message"]["content"] == expected and resp["choices"][0]["finish_reason"] == "stop"
    streamed = client.post("/v1/chat/completions", json={**request, "stop": [stop], "stream": True})
    chunks = sse_events(streamed.text)[:-1]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_cache_reuses_media_embeddings(client, serve_pipe) -> None:
    request = {**GREEDY, "max_tokens": 2, "messages": [user("Q", video("example.mp4"))]}
    answer(client.post("/v1/chat/completions", json=request))
    hits = serve_pipe.cache_hits
    answer(client.post("/v1/chat/completions", json=request))
    assert serve_pipe.cache_hits == hits + 1
