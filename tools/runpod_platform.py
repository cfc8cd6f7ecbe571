"""RunPod's side of a queue worker, on loopback: the endpoints the worker's production loop
talks to (take jobs, post results, post stream chunks), so the worker can run exactly as it
does on the platform, in the tests and in `tools/image.py check`."""

from __future__ import annotations

import json
import threading


class FakePlatform:
    """The RunPod platform's side of a worker's production loop, on loopback: hands out the
    queued jobs at /job-take (one) and /job-take-batch (up to `batch_size`, as a list: the SDK
    asks there when its concurrency is above 1), records what comes back at /job-done and
    /job-stream."""

    def __init__(self, jobs: list[dict]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.jobs = list(jobs)
        self.takes: list[str] = []  # every job-take request's path
        self.done: list[dict] = []
        self.streamed: list[dict] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                from urllib.parse import parse_qs, urlsplit

                query = parse_qs(urlsplit(self.path).query)
                with owner.lock:
                    owner.takes.append(self.path)
                    if self.path.startswith("/job-take-batch/"):
                        size = int(query.get("batch_size", ["1"])[0])
                        taken, owner.jobs = owner.jobs[:size], owner.jobs[size:]
                        payload = taken or None
                    else:
                        payload = owner.jobs.pop(0) if self.path.startswith("/job-take/") and owner.jobs else None
                if payload is None:
                    self.send_response(204)
                    self.end_headers()
                    return
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                record = {"path": self.path, "body": json.loads(body)}
                with owner.lock:
                    (owner.streamed if self.path.startswith("/job-stream/") else owner.done).append(record)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def env(self) -> dict[str, str]:
        base = f"http://127.0.0.1:{self.port}"
        return {
            "RUNPOD_POD_ID": "test-worker",
            "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$RUNPOD_POD_ID?gpu=test",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID?id=$ID",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID?id=$ID",
        }

    def finished(self, job_id: str) -> list[dict]:
        with self.lock:
            return [d["body"] for d in self.done
                    if f"id={job_id}&" in d["path"] and d["body"].get("status") != "IN_PROGRESS"]

    def progress(self, job_id: str) -> list[dict]:
        with self.lock:
            return [d["body"] for d in self.done
                    if f"id={job_id}&" in d["path"] and d["body"].get("status") == "IN_PROGRESS"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
