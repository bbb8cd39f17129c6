import json
import logging
import subprocess
import sys
import threading

import httpx

from tokenwire.logs import JsonFormatter, RequestIdFilter, request_id_var

SECRET_PROMPT = "my very secret prompt text"


def test_records_carry_the_request_id_of_their_context() -> None:
    record = logging.LogRecord("tokenwire", logging.INFO, __file__, 1, "hello", (), None)
    token = request_id_var.set("req_abc")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line == {**line, "request_id": "req_abc", "message": "hello", "level": "info"}


def test_served_requests_log_json_lines_with_ids_and_no_prompt_or_key() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokenwire.cli",
            "serve",
            "--backend",
            "echo",
            "--port",
            "0",
            "--log-format",
            "json",
            "--api-key",
            "sk-hidden-key",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        for line in process.stderr:
            lines.append(line)
            if "Uvicorn running on" in line:
                url = json.loads(line)["message"].split("running on ")[1].split()[0]
                break
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        body = {"model": "echo", "messages": [{"role": "user", "content": SECRET_PROMPT}]}
        headers = {"authorization": "Bearer sk-hidden-key", "x-request-id": "trace-77"}
        assert (
            httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers).status_code == 200
        )
        bad = {"model": "echo", "messages": [{"role": "user", "content": SECRET_PROMPT}], "n": 5}
        assert (
            httpx.post(f"{url}/v1/chat/completions", json=bad, headers=headers).status_code == 400
        )
    finally:
        process.terminate()
        process.wait(10)
        reader.join(5)
        process.stderr.close()
    output = "".join(lines)
    assert all(json.loads(line)["level"] for line in lines if line.strip())
    records = [json.loads(line) for line in lines if line.strip()]
    served = [r for r in records if r["logger"] == "tokenwire.access"]
    assert [r["request_id"] for r in served] == ["trace-77", "trace-77"]
    assert "200" in served[0]["message"] and "400" in served[1]["message"]
    assert SECRET_PROMPT not in output
    assert "sk-hidden-key" not in output
