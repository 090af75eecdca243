"""HTTP peer for eventlet-bench: eventlet.wsgi answering "Hello, World!", no access log.

    python3 http_eventlet.py 127.0.0.1:8080
"""
import resource
import socket
import sys
import warnings

warnings.simplefilter("ignore")  # eventlet announces its deprecation on import

import eventlet  # noqa: E402
from eventlet import wsgi  # noqa: E402

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def hello(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, port = sys.argv[1].rsplit(":", 1)
    sock = eventlet.listen((host, int(port)), backlog=1024)
    # Accepted sockets inherit TCP_NODELAY on Linux: without it, Nagle holds
    # the second write of a response until the client's delayed ACK (40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wsgi.server(sock, hello, log_output=False, max_size=20000)


if __name__ == "__main__":
    main()
