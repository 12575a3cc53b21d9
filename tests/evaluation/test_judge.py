"""The judge: verdict parsing, the OpenAI-compatible client (retries, errors, auth) and its disk cache."""

from __future__ import annotations

import pytest

from videollama.evaluation.judge import (
    JudgeClient, JudgeError, chat_completions_url, criterion_messages, parse_qa_verdict, parse_score, qa_messages,
)


@pytest.mark.parametrize("reply,expected", [
    ("{'pred': 'yes', 'score': 4}", (True, 4.0)),
    ('{"pred": "no", "score": 0}', (False, 0.0)),
    ("```python\n{'pred': 'yes', 'score': 5}\n```", (True, 5.0)),
    ("Here is my evaluation: {'pred': 'Yes', 'score': '3'} hope it helps", (True, 3.0)),
    ("{'pred': 'yes', 'score': 4.8}", (True, 4.8)),
    ("{'pred': 'no', 'score': 7}", (False, 5.0)),  # clamped
    ("{'score': 2, 'pred': 'no'}", (False, 2.0)),
    ("pred: yes, score: 3", (True, 3.0)),
    ("{'pred': 'maybe', 'score': 3}", None),
    ("{'pred': 'yes'}", None),
    ("I cannot evaluate this.", None),
    ("", None),
])
def test_parse_qa_verdict(reply, expected):
    assert parse_qa_verdict(reply) == expected


@pytest.mark.parametrize("reply,expected", [
    ("{'score': 4}", 4.0), ('{"score": "3"}', 3.0), ("Score: 2", 2.0), ("5", 5.0), ("{'score': -1}", 0.0),
    ("no idea", None),
])
def test_parse_score(reply, expected):
    assert parse_score(reply) == expected


def test_prompts_follow_the_protocol():
    msgs = qa_messages("What is it?", "a dog", "a puppy")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "Correct answer: a dog\n" in msgs[1]["content"] and "Predicted answer: a puppy\n" in msgs[1]["content"]
    assert "'pred'" in msgs[1]["content"] and "'score'" in msgs[1]["content"]
    cons = criterion_messages("consistency", "Q1?", "A", "p1", "Q2?", "p2")
    assert "Question 2: Q2?" in cons[1]["content"] and "question 2: p2" in cons[1]["content"]
    for c in ("correctness", "detail", "context", "temporal"):
        assert "'score'" in criterion_messages(c, "Q", "A", "P")[1]["content"]


def test_url_forms():
    assert chat_completions_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"


def test_retry_on_500_then_success_and_cache(stub_judge, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOLLAMA_JUDGE_API_KEY", "sk-test")
    sleeps = []
    client = JudgeClient(stub_judge.url, "stub-judge", cache_dir=tmp_path / "jc", sleep=sleeps.append, backoff=0.5)
    stub_judge.fail = [500, 429]
    msgs = qa_messages("q?", "dog", "dog")
    assert client.complete(msgs) == "{'pred': 'yes', 'score': 4}"
    assert stub_judge.calls == 3 and client.calls == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]  # exponential backoff
    assert stub_judge.headers[-1]["Authorization"] == "Bearer sk-test"
    assert stub_judge.requests[-1]["model"] == "stub-judge" and stub_judge.requests[-1]["temperature"] == 0.0
    # the same request again, even from a new client: served from the disk cache
    again = JudgeClient(stub_judge.url, "stub-judge", cache_dir=tmp_path / "jc", sleep=sleeps.append)
    assert again.complete(msgs) == "{'pred': 'yes', 'score': 4}"
    assert stub_judge.calls == 3 and again.calls == 0 and again.cache_hits == 1
    # another judge model is another cache key
    other = JudgeClient(stub_judge.url, "other-judge", cache_dir=tmp_path / "jc", sleep=sleeps.append)
    other.complete(msgs)
    assert stub_judge.calls == 4


def test_client_errors(stub_judge, tmp_path):
    client = JudgeClient(stub_judge.url, "m", cache_dir=tmp_path / "jc", sleep=lambda s: None, max_retries=2)
    stub_judge.fail = [400]
    with pytest.raises(JudgeError, match="HTTP 400"):
        client.complete(qa_messages("q", "a", "b"))
    assert stub_judge.calls == 1  # not retried
    stub_judge.fail = [503, 503, 503]
    with pytest.raises(JudgeError, match="giving up after 3 attempts"):
        client.complete(qa_messages("q", "a", "c"))
    assert stub_judge.calls == 4
    # nothing listening: connection refused is retried, then a clear error
    dead = JudgeClient("http://127.0.0.1:9", "m", cache_dir=tmp_path / "jc", sleep=lambda s: None, max_retries=1,
                       timeout=2)
    with pytest.raises(JudgeError, match="giving up"):
        dead.complete(qa_messages("q", "a", "d"))
