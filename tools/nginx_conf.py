"""An nginx configuration that puts several higgs-tts replicas behind one address, balanced per
request (not per connection): HTTP (streaming answers passed on as they come) and gRPC
(`grpc_pass`, each call to the next replica). One GPU box with several GPUs runs one replica per
GPU behind it; the replica tests run it in front of real replicas.

    python tools/nginx_conf.py --http 8000 --grpc 50051 \\
        --replica 127.0.0.1:8001,127.0.0.1:50061 --replica 127.0.0.1:8002,127.0.0.1:50062 > higgs.conf
    nginx -c "$PWD/higgs.conf" -p "$PWD"

A request nothing has started yet is tried on the next replica: one whose replica refused the
connection or answered 502/503 before any byte (a replica gone, starting or draining: HTTP
503 + Retry-After), POSTs included (a refusal means nothing was done). gRPC calls refused with
UNAVAILABLE are retried by the client's service config (adapters/grpc/client.py); nginx retries
the ones whose connection failed. WebSocket sessions (/v1/audio/speech/stream) are upgraded
through, each to one replica for its whole life."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Replica:
    http: str  # HOST:PORT
    grpc: str | None = None


def render(replicas: list[Replica], http_listen: str, grpc_listen: str | None, prefix: Path,
           fail_timeout: float = 2.0) -> str:
    """The whole nginx.conf; `prefix` holds its pid, logs and temporary files."""
    if not replicas:
        raise ValueError("at least one replica")
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers keep the files the master made
    servers = "".join(f"        server {r.http} max_fails=1 fail_timeout={fail_timeout:g}s;\n" for r in replicas)
    grpc_upstream = grpc_server = ""
    if grpc_listen is not None:
        grpc_servers = "".join(f"        server {r.grpc} max_fails=1 fail_timeout={fail_timeout:g}s;\n"
                               for r in replicas if r.grpc)
        grpc_upstream = f"    upstream higgs_grpc {{\n{grpc_servers}        keepalive 32;\n    }}\n"
        grpc_server = f"""
    server {{
        listen {grpc_listen} http2;
        location / {{
            grpc_pass grpc://higgs_grpc;
            grpc_next_upstream error timeout;
            grpc_read_timeout 600s;
            grpc_send_timeout 600s;
            client_max_body_size 64m;
        }}
    }}
"""
    temp = "".join(f"    {kind}_temp_path {prefix / 'tmp' / kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}worker_processes 2;
daemon off;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix / 'access.log'};
{temp}    map $http_upgrade $connection_upgrade {{  # WebSocket sessions: upgrade; the rest: keepalive
        default upgrade;
        "" "";
    }}
    upstream higgs_http {{
{servers}        keepalive 32;
    }}
{grpc_upstream}    server {{
        listen {http_listen};
        client_max_body_size 64m;
        location / {{
            proxy_pass http://higgs_http;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_read_timeout 600s;
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 4;
        }}
    }}
{grpc_server}}}
"""


def prepare(prefix: Path) -> None:
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / kind).mkdir(parents=True, exist_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", default="8000", help="where nginx listens for HTTP ([HOST:]PORT)")
    parser.add_argument("--grpc", default=None, help="where nginx listens for gRPC ([HOST:]PORT); none: no gRPC")
    parser.add_argument("--replica", action="append", required=True,
                        help="HTTP_HOST:PORT[,GRPC_HOST:PORT] of one replica (repeat)")
    parser.add_argument("--prefix", type=Path, default=Path.cwd(), help="pid, logs and temporary files")
    args = parser.parse_args(argv)
    replicas = [Replica(*r.split(",", 1)) for r in args.replica]
    prepare(args.prefix)
    sys.stdout.write(render(replicas, args.http, args.grpc, args.prefix.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
