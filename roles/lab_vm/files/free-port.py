"""free-port.py FILE: write a TCP port that is free on 127.0.0.1 to FILE (only when FILE does not exist)."""
import os
import socket
import sys

path = sys.argv[1]
if not os.path.exists(path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with open(path + ".tmp", "w") as handle:
        handle.write("%d\n" % port)
    os.rename(path + ".tmp", path)
    print("chose %d" % port)
