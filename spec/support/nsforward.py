#!/usr/bin/env python3
"""Make a registry on the host's 127.0.0.1:PORT reachable at the same
address inside the network namespace the suite's private dockerd runs in
(tools/services.sh starts it with `unshare --net`), so `docker pull` and
`docker push` can talk to it under the same image name pht uses.

    nsforward.py --netns /proc/PID/ns/net --upstream 127.0.0.1:PORT --ready FILE

The listening socket is made inside the namespace (after its loopback is
brought up), every upstream connection in the host's; bytes are copied
both ways. It writes FILE once it listens and runs until killed.
"""

import argparse
import ctypes
import os
import socket
import subprocess
import threading

CLONE_NEWNET = 0x40000000


def setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, host, port):
    try:
        up = socket.create_connection((host, port))
    except OSError:
        conn.close()
        return
    threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
    threading.Thread(target=pipe, args=(up, conn), daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--netns", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--ready", required=True)
    a = ap.parse_args()
    host, port = a.upstream.rsplit(":", 1)
    port = int(port)
    mine = os.open("/proc/self/ns/net", os.O_RDONLY)
    theirs = os.open(a.netns, os.O_RDONLY)
    setns(theirs)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(64)
    setns(mine)  # upstream sockets are made in the host's namespace
    with open(a.ready, "w") as f:
        f.write("ok\n")
    while True:
        conn, _ = lsock.accept()
        serve(conn, host, port)


if __name__ == "__main__":
    main()
