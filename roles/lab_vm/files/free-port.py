"""free-port.py FILE: write a TCP port that is free on 127.0.0.1 to FILE (only when FILE does not exist).

Labs built at once on one hypervisor (several in one ansible-playbook run) choose under one lock, and a
port another lab has written down is never chosen, even when its guest is not listening on it now."""
import fcntl
import glob
import os
import socket
import sys

path = sys.argv[1]
labs = os.path.dirname(os.path.dirname(os.path.abspath(path)))
if not os.path.exists(path):
    with open(os.path.join(labs, ".ports.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        taken = set()
        for other in glob.glob(os.path.join(labs, "*", "ssh_port")):
            try:
                with open(other) as handle:
                    taken.add(int(handle.read().strip()))
            except (OSError, ValueError):
                pass
        for dummy in range(100):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            sock.close()
            if port not in taken:
                break
        else:
            sys.exit("no free port on 127.0.0.1 that no other lab has taken (100 tries)")
        with open(path + ".tmp", "w") as handle:
            handle.write("%d\n" % port)
        os.rename(path + ".tmp", path)
    print("chose %d" % port)
