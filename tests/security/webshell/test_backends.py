"""The prompt builder and the OpenAI-compatible backend against a stub server on loopback."""

import http.server
import json
import threading
import types

import ml_collections
import pytest

from jaxpapers.security.webshell import backends, prompt


def test_conversation_layout():
    demo = (prompt.Shown("eval($_POST['x']);", "Critical functions: eval (code_execution)."), 1)
    messages = prompt.conversation(prompt.Shown("echo 1;"), [demo])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == prompt.SYSTEM
    assert messages[1]["content"] == (
        "Critical functions: eval (code_execution).\n"
        "```php\neval($_POST['x']);\n```\n" + prompt.QUESTION
    )
    assert messages[2]["content"] == "yes"
    assert messages[3]["content"] == "```php\necho 1;\n```\n" + prompt.QUESTION
    with pytest.raises(ValueError, match="label must be 0 or 1"):
        prompt.conversation(prompt.Shown("x"), [(prompt.Shown("y"), 2)])


def test_parse_answer_and_header():
    assert prompt.parse_answer(" Yes, it is.") == 1
    assert prompt.parse_answer("**no**") == 0
    assert prompt.parse_answer("maybe") is None
    assert prompt.parse_answer("Not sure") is None and prompt.parse_answer("None.") is None
    assert prompt.parse_answer("NO.") == 0
    call = types.SimpleNamespace
    calls = [
        call(name="eval", category="code_execution"),
        call(name="eval", category="x"),
        call(name="strrev", category="obfuscation"),
    ]
    assert prompt.critical_header(calls) == (
        "Critical functions: eval (code_execution), strrev (obfuscation)."
    )
    assert prompt.critical_header([]) == "Critical functions: none found."


class _Stub(http.server.BaseHTTPRequestHandler):
    requests: list = []
    fail_first: list = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, dict(self.headers), body))
        if type(self).fail_first:
            code = type(self).fail_first.pop(0)
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"busy")
            return
        code = body["messages"][-1]["content"]
        answer = "Yes." if "eval" in code else ("No" if "echo" in code else "I cannot tell")
        reply = {"choices": [{"message": {"role": "assistant", "content": answer}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    _Stub.requests, _Stub.fail_first = [], []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _conversations(*codes):
    return [prompt.conversation(prompt.Shown(c)) for c in codes]


def test_openai_backend_against_stub(server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-test")
    backend = backends.OpenAIBackend(server, "qwen-coder", api_key_env="STUB_KEY", backoff=0.0)
    verdicts = backend.classify(_conversations("eval($x);", "echo 1;", "$a = 1;"))
    assert [v.label for v in verdicts] == [1, 0, 0]
    assert verdicts[2].text == "I cannot tell"  # unparseable: benign, answer kept
    assert [v.unparsed for v in verdicts] == [False, False, True]
    path, headers, body = _Stub.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test"
    assert body["model"] == "qwen-coder" and body["temperature"] == 0
    assert body["messages"] == _conversations("eval($x);")[0]


def test_openai_backend_retries_then_fails_clearly(server):
    _Stub.fail_first = [503, 429]
    backend = backends.OpenAIBackend(server, "m", api_key_env="", backoff=0.0)
    assert backend.classify(_conversations("eval(1);"))[0].label == 1
    assert len(_Stub.requests) == 3
    assert "Authorization" not in _Stub.requests[0][1]
    _Stub.fail_first = [400]
    with pytest.raises(RuntimeError, match="HTTP 400: busy"):
        backend.classify(_conversations("eval(1);"))


def test_make_rejects_bad_configs():
    c = ml_collections.ConfigDict(
        {
            "backend": "gpt",
            "base_url": "",
            "model": "",
            "api_key_env": "",
            "max_prompt_tokens": 9,
            "timeout": 1.0,
            "max_answer_tokens": 3,
        }
    )
    with pytest.raises(ValueError, match="unknown LLM backend"):
        backends.make(c)
    c.backend = "openai"
    with pytest.raises(ValueError, match="http"):
        backends.make(c)
    c.base_url = "http://localhost:1/v1"
    with pytest.raises(ValueError, match="model name"):
        backends.make(c)
