"""The students' path of the README, walked as a student walks it: ``jupyter lab notebooks/``
starts a server (here headless, on the loopback address, with a token), the student copy of
chapter 01 runs top to bottom in a kernel started through the server's API with
``profile = "smoke"``, the exercise checkers answer, and the live explorer responds to a
control change sent as the browser sends it (a widget comm message)."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from urllib.request import Request, urlopen

import nbformat
import pytest

from xmrlib import classroom

pytestmark = pytest.mark.slow
CHAPTER = "01_task_and_metrics.ipynb"
WRONG_ANSWER = """def t2i_recall(sims, k, cpi=5):          # a fraction instead of percent
    hits = sum((sims[:, j] >= sims[j // cpi, j]).sum() <= k for j in range(sims.shape[1]))
    return hits / sims.shape[1]"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running ``jupyter lab``, reached as a browser reaches it (REST with the token)."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token

    def get(self, path: str, method: str = "GET", body: dict | None = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        req = Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                      headers={"Authorization": f"token {self.token}",
                               "Content-Type": "application/json"})
        with urlopen(req, timeout=15) as reply:
            return reply.status, reply.read()

    def api(self, path: str, method: str = "GET", body: dict | None = None):
        status, raw = self.get(path, method, body)
        assert 200 <= status < 300, (path, status)
        return json.loads(raw) if raw else None


class Kernel:
    """The kernel's websocket channel, spoken as JupyterLab speaks it (JSON messages)."""

    def __init__(self, lab: Lab, kernel_id: str) -> None:
        import websocket  # websocket-client, a dependency of jupyter-server

        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{lab.port}/api/kernels/{kernel_id}/channels?token={lab.token}",
            timeout=60)
        self.session = uuid.uuid4().hex

    def request(self, msg_type: str, content: dict, timeout: float = 60) -> list[dict]:
        """Send a shell request; the iopub messages it caused, until the kernel is idle."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "username": "student",
                       "session": self.session, "version": "5.3",
                       "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "content": content, "channel": "shell",
            "buffers": []}))
        deadline, out = time.monotonic() + timeout, []
        while True:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            if msg.get("channel") != "iopub" or msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return out
            out.append(msg)

    def execute(self, code: str) -> list[dict]:
        msgs = self.request("execute_request", {"code": code, "silent": False,
                                                "store_history": True, "user_expressions": {},
                                                "allow_stdin": False, "stop_on_error": True})
        errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
        assert not errors, f"{code[:200]}\n" + "\n".join(errors[0]["traceback"])
        return msgs


def _printed(msgs: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")


@pytest.fixture
def lab(tmp_path):
    """``jupyter lab notebooks/`` on the student edition, headless on 127.0.0.1; stopped after."""
    classroom.student_edition(tmp_path / "notebooks")
    jupyter = shutil.which("jupyter", path=os.path.dirname(sys.executable))
    assert jupyter, "no `jupyter` next to this Python: pip install -r requirements.txt"
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "XMR_RESULTS_DIR": str(tmp_path / "results")}
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen(
        [jupyter, "lab", "notebooks/", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         *(["--allow-root"] if os.geteuid() == 0 else [])],      # CI runs as root
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    running = Lab(port, token)
    try:
        for _ in range(120):
            assert server.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            try:
                running.get("/api/status")
                break
            except OSError:
                time.sleep(0.25)
        yield running
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_student_runs_a_chapter_in_jupyter_lab(lab):
    t0 = time.monotonic()
    status, page = lab.get("/lab")
    assert status == 200 and b"JupyterLab" in page
    assert CHAPTER in {item["name"] for item in lab.api("/api/contents/")["content"]}
    nb = nbformat.from_dict(lab.api(f"/api/contents/{CHAPTER}?content=1")["content"])
    session = lab.api("/api/sessions", "POST", {"path": CHAPTER, "name": CHAPTER,
                                                "type": "notebook", "kernel": {"name": "python3"}})
    kernel = Kernel(lab, session["kernel"]["id"])
    outputs = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        source = cell.source
        if "parameters" in cell.metadata.get("tags", []):
            source = source.replace('profile = "default"', 'profile = "smoke"')
            assert 'profile = "smoke"' in source
        outputs[index] = kernel.execute(source)

    checkers = [i for i, c in enumerate(nb.cells) if "from xmrlib.exercises import" in c.source]
    assert len(checkers) == 2
    for i in checkers:                      # the stubs are not written yet: feedback, no crash
        assert "✗" in _printed(outputs[i]) and "NotImplementedError" in _printed(outputs[i])
    kernel.execute(WRONG_ANSWER)            # the student's first try
    feedback = _printed(kernel.execute(nb.cells[checkers[0]].source))
    assert "✗" in feedback and "fraction" in feedback, feedback

    explorer = next(i for i, c in enumerate(nb.cells) if "metric_explorer(" in c.source)
    shown = [m for m in outputs[explorer] if m["msg_type"] in ("display_data", "execute_result")]
    assert "application/vnd.jupyter.widget-view+json" in shown[0]["content"]["data"]
    models = {}                             # the widgets' states as the front end holds them
    for m in outputs[explorer]:
        if m["msg_type"] == "comm_open":
            models[m["content"]["comm_id"]] = dict(m["content"]["data"]["state"])
        elif m["msg_type"] == "comm_msg" and m["content"]["data"]["method"] == "update":
            models[m["content"]["comm_id"]].update(m["content"]["data"]["state"])
    [slider] = [c for c, s in models.items()
                if s["_model_name"] == "IntSliderModel" and s["description"] == "index"]
    [verdict] = [c for c, s in models.items()
                 if s["_model_name"] == "HTMLModel" and s["value"].startswith("query 0:")]
    replies = kernel.request("comm_msg", {"comm_id": slider, "data": {
        "method": "update", "state": {"value": 3}, "buffer_paths": []}})
    updates = [m["content"]["data"]["state"] for m in replies if m["msg_type"] == "comm_msg"
               and m["content"]["comm_id"] == verdict]
    assert updates and updates[-1]["value"].startswith("query 3:"), replies
    print(f"student path: chapter 01 ran in JupyterLab in {time.monotonic() - t0:.1f} s")
