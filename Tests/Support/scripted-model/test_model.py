"""Tests of the scripted Messages API (model.py): the wire format and the script.

Standard library only; runs with the fixtures' pytest (`pytest -q Tests/Support`), ~1 s.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import time

import pytest

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.py")
KEY = "sk-ant-api03-test-key"
PAYLOAD = {"job_id": "abcdefgh12345678", "kind": "TASK_IMPLEMENTATION", "branch_name": "feat/story-abcdefgh",
           "worktree_path": "/tmp/x"}


@pytest.fixture()
def server(tmp_path):
    port_file, log = tmp_path / "port", tmp_path / "req.jsonl"
    proc = subprocess.Popen([sys.executable, MODEL, "--port", "0", "--port-file", str(port_file), "--log", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while not port_file.exists() and time.time() < deadline:
        time.sleep(0.02)
    assert port_file.exists(), proc.stderr.read() if proc.poll() is not None else "no port file"
    yield int(port_file.read_text()), log
    proc.terminate()
    proc.wait(10)
    assert not port_file.exists()


def call(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"content-type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    out = resp.status, resp.getheader("content-type"), resp.read()
    conn.close()
    return out


def sse_message(raw: bytes) -> tuple[list[str], dict]:
    """Event names and the message rebuilt from an SSE body, as an SDK would."""
    events, msg, parts = [], {}, {}
    for chunk in raw.decode().split("\n\n"):
        if not chunk.strip():
            continue
        lines = dict(line.split(": ", 1) for line in chunk.split("\n"))
        data = json.loads(lines["data"])
        assert data["type"] == lines["event"]
        events.append(lines["event"])
        if data["type"] == "message_start":
            msg = data["message"]
        elif data["type"] == "content_block_start":
            msg["content"].append(data["content_block"])
            parts[data["index"]] = ""
        elif data["type"] == "content_block_delta":
            d = data["delta"]
            if d["type"] == "text_delta":
                msg["content"][data["index"]]["text"] += d["text"]
            else:
                parts[data["index"]] += d["partial_json"]
        elif data["type"] == "content_block_stop":
            block = msg["content"][data["index"]]
            if block["type"] == "tool_use":
                block["input"] = json.loads(parts[data["index"]])
        elif data["type"] == "message_delta":
            msg["stop_reason"] = data["delta"]["stop_reason"]
    return events, msg


def turn(port: int, messages: list, stream: bool = True, tools=("Bash", "ToolSearch")) -> dict:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream, "messages": messages,
            "tools": [{"name": t, "input_schema": {"type": "object"}} for t in tools]}
    status, ctype, raw = call(port, "POST", "/v1/messages?beta=true", body, {"x-api-key": KEY})
    assert status == 200
    if stream:
        assert ctype.startswith("text/event-stream")
        events, msg = sse_message(raw)
        assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
        return msg
    assert ctype == "application/json"
    return json.loads(raw)


def result(tool_use: dict, text: str, is_error: bool = False) -> dict:
    return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"],
                                         "content": [{"type": "text", "text": text}], "is_error": is_error}]}


def tool_use(msg: dict) -> dict:
    return next(b for b in msg["content"] if b["type"] == "tool_use")


def test_script_runs_in_order_streamed_and_not(server):
    port, log = server
    convo: list = [{"role": "user", "content": "do the job"}]
    names = []
    for i, stream in enumerate([True, False, True, False, True]):
        msg = turn(port, convo, stream=stream)
        if msg["stop_reason"] == "end_turn":
            break
        use = tool_use(msg)
        names.append(use["name"])
        convo.append({"role": "assistant", "content": msg["content"]})
        convo.append(result(use, json.dumps(PAYLOAD) if i == 0 else "ok"))
    assert names == ["Bash", "Bash", "ToolSearch", "mcp__scrum4me__verify_task_against_plan",
                     "mcp__scrum4me__update_job_status"]
    report = tool_use({"content": convo[-2]["content"]})["input"]
    assert report == {"job_id": PAYLOAD["job_id"], "status": "done", "branch": PAYLOAD["branch_name"],
                      "summary": "Scripted model: wrote and committed one file."}
    final = turn(port, convo)
    assert final["stop_reason"] == "end_turn" and PAYLOAD["job_id"] in final["content"][0]["text"]

    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["step"] for e in entries] == ["payload", "commit", "toolsearch", "verify", "report", "final"]
    for e in entries:
        assert e["credential_header"] == "x-api-key"
        assert e["headers"]["x-api-key"] == {"prefix": KEY[:10], "sha256": hashlib.sha256(KEY.encode()).hexdigest()}
        assert KEY not in json.dumps(e)


def test_commit_command_and_loaded_tools_skip_toolsearch(server):
    port, _ = server
    tools = ("Bash", "ToolSearch", "mcp__scrum4me__verify_task_against_plan", "mcp__scrum4me__update_job_status")
    convo: list = [{"role": "user", "content": "go"}]
    first = turn(port, convo, tools=tools)
    convo += [{"role": "assistant", "content": first["content"]}, result(tool_use(first), "noise\n" + json.dumps(PAYLOAD))]
    commit = tool_use(turn(port, convo, tools=tools))
    assert "git" in commit["input"]["command"] and "scripted-model-abcdefgh.txt" in commit["input"]["command"]
    convo += [{"role": "assistant", "content": [commit]}, result(commit, "done")]
    assert tool_use(turn(port, convo, tools=tools))["name"] == "mcp__scrum4me__verify_task_against_plan"


def test_failed_tool_ends_the_run_and_side_requests_get_text(server):
    port, log = server
    convo: list = [{"role": "user", "content": "go"}]
    first = turn(port, convo)
    convo += [{"role": "assistant", "content": first["content"]}, result(tool_use(first), "denied", is_error=True)]
    end = turn(port, convo)
    assert end["stop_reason"] == "end_turn" and "denied" in end["content"][0]["text"]
    side = turn(port, [{"role": "user", "content": "title?"}], tools=())
    assert side["stop_reason"] == "end_turn"
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == ["payload", "aborted", "side"]


def test_other_endpoints(server):
    port, log = server
    assert call(port, "POST", "/v1/messages/count_tokens", {"messages": []})[0] == 200
    assert call(port, "GET", "/v1/models")[0] == 200
    assert call(port, "HEAD", "/api/hello")[0] == 200
    status, _, raw = call(port, "POST", "/v1/other", {})
    assert status == 404 and json.loads(raw)["type"] == "error"
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == ["count_tokens", "models", "health", "unknown"]
