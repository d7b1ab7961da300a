"""start-and-wait.py URI NAME PORT ATTEMPT_SECONDS ATTEMPTS

Start the domain when it is not running and wait for the SSH banner on 127.0.0.1:PORT.
Under TCG a guest with many vCPUs now and then hangs early in boot (a lost timer interrupt
with vCPU threads outnumbering host cores); such a boot is reset and tried again, at most
ATTEMPTS times. Prints what it did; exits 1 when no attempt answered.
"""
import socket
import subprocess
import sys
import time

uri, name, port, per_attempt, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])


def virsh(*args):
    return subprocess.run(["virsh", "-q", "-c", uri] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)


def banner(timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.settimeout(10)
                if sock.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(2)
    return False


started = []
for attempt in range(1, attempts + 1):
    if virsh("domstate", name).stdout.strip() != "running":
        result = virsh("start", name)
        if result.returncode:
            sys.exit("cannot start %s: %s" % (name, result.stderr.strip()))
        started.append(attempt)
    if banner(per_attempt):
        print("started (attempt %d)" % attempt if started else "already running")
        sys.exit(0)
    if attempt < attempts:
        print("no SSH after %d s on attempt %d: resetting the guest" % (per_attempt, attempt))
        sys.stdout.flush()
        virsh("destroy", name)
print("no SSH after %d attempts of %d s" % (attempts, per_attempt))
sys.exit(1)
