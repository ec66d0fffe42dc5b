"""Tests of the scripted Messages API (fake-anthropic/fake_anthropic.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "fake-anthropic"))

import fake_anthropic as fa  # noqa: E402

BODY = {"model": "claude-haiku-4-5", "max_tokens": 1, "messages": [{"role": "user", "content": "quota"}]}


def post(url: str, headers: dict[str, str], body: dict | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url + "/v1/messages", data=json.dumps(body or BODY).encode(), method="POST")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


API_KEY = {"x-api-key": "sk-ant-api03-test", "anthropic-version": "2023-06-01", "content-type": "application/json"}
OAUTH = {"authorization": "Bearer sk-ant-oat01-test", "anthropic-beta": "oauth-2025-04-20", "anthropic-version": "2023-06-01"}


def test_phases_headers_and_log(tmp_path):
    script, log = str(tmp_path / "s.json"), str(tmp_path / "l.jsonl")
    now = time.time()
    fa.write_script(script, {"phases": [
        {"until": now + 60, "headers": fa.unified_headers(0.65, now + 60, 0.2, now + 86400)},
        {"headers": fa.unified_headers(0.1, now + 3600)},
    ]})
    with fa.FakeAnthropic(script, log) as fake:
        status, headers, body = post(fake.url, OAUTH)
        assert status == 200
        assert headers["anthropic-ratelimit-unified-5h-utilization"] == "0.65"
        assert headers["anthropic-ratelimit-unified-7d-reset"] == str(int(now + 86400))
        assert json.loads(body)["type"] == "message"

        # Rewriting the script moves to the next phase at once.
        fa.write_script(script, {"phases": [{"until": now - 1, "headers": {}}, {"headers": fa.token_headers(14000, 40000, now + 30)}]})
        status, headers, _ = post(fake.url, API_KEY)
        assert status == 200
        assert headers["anthropic-ratelimit-tokens-remaining"] == "14000"
        assert headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
        assert fake.requests_served == 2

    entries = fa.read_log(log)
    assert [e["auth"] for e in entries] == ["bearer", "x-api-key"]
    assert entries[0]["anthropic_beta"] == "oauth-2025-04-20" and entries[0]["max_tokens"] == 1
    assert all("sk-ant" not in json.dumps(e) for e in entries), "a credential was logged"


def test_authentication_like_the_api(tmp_path):
    script = str(tmp_path / "s.json")
    fa.write_script(script, {"credential": "sk-ant-api03-test", "phases": [{"headers": fa.token_headers(1, 2, "2030-01-01T00:00:00Z")}]})
    with fa.FakeAnthropic(script, None) as fake:
        assert post(fake.url, API_KEY)[0] == 200
        wrong = dict(API_KEY, **{"x-api-key": "sk-ant-api03-other"})
        status, _, body = post(fake.url, wrong)
        assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error"
        no_beta = {k: v for k, v in OAUTH.items() if k != "anthropic-beta"}
        status, _, body = post(fake.url, no_beta)
        assert status == 401 and "OAuth" in json.loads(body)["error"]["message"]
        no_version = {k: v for k, v in API_KEY.items() if k != "anthropic-version"}
        assert post(fake.url, no_version)[0] == 400


def test_scripted_error_and_stream(tmp_path):
    script = str(tmp_path / "s.json")
    fa.write_script(script, {"phases": [{"status": 529, "body": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}}]})
    with fa.FakeAnthropic(script, None) as fake:
        status, _, body = post(fake.url, API_KEY)
        assert status == 529 and json.loads(body)["error"]["type"] == "overloaded_error"
        fa.write_script(script, {"phases": [{"text": "hello there", "headers": {"x-test": "1"}}]})
        status, headers, body = post(fake.url, API_KEY, dict(BODY, stream=True))
        assert status == 200 and headers["content-type"] == "text/event-stream" and headers["x-test"] == "1"
        events = [line[7:] for line in body.decode().splitlines() if line.startswith("event: ")]
        assert events == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                          "message_delta", "message_stop"]
        assert "hello there" in body.decode()


def test_cli_serve_and_count(tmp_path):
    port_file, log = tmp_path / "port", str(tmp_path / "l.jsonl")
    proc = subprocess.Popen([sys.executable, fa.__file__, "serve", "--log", log, "--port-file", str(port_file)],
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 15
        while not port_file.exists() and time.time() < deadline:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        assert post(url, API_KEY)[0] == 200  # no script: 200 without rate-limit headers
        assert post(url, API_KEY)[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    out = subprocess.run([sys.executable, fa.__file__, "count", "--log", log], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"requests": 2}
