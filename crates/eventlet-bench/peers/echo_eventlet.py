"""Echo peer for eventlet-bench: Python eventlet, one green thread per connection.

    python3 echo_eventlet.py 127.0.0.1:6000
"""
import resource
import socket
import sys
import warnings

warnings.simplefilter("ignore")  # eventlet announces its deprecation on import

import eventlet  # noqa: E402


def handle(sock):
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass
    finally:
        sock.close()


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, port = sys.argv[1].rsplit(":", 1)
    server = eventlet.listen((host, int(port)), backlog=1024)
    pool = eventlet.GreenPool(20000)
    while True:
        try:
            sock, _ = server.accept()
        except OSError as e:
            print("echo_eventlet: accept:", e, file=sys.stderr)
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pool.spawn_n(handle, sock)


if __name__ == "__main__":
    main()
