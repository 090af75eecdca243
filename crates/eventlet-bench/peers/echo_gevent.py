"""Echo peer for eventlet-bench: gevent's StreamServer, one greenlet per connection.

    python3 echo_gevent.py 127.0.0.1:6000
"""
import resource
import socket
import sys

from gevent.server import StreamServer


def handle(sock, _address):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, port = sys.argv[1].rsplit(":", 1)
    StreamServer((host, int(port)), handle, backlog=1024).serve_forever()


if __name__ == "__main__":
    main()
