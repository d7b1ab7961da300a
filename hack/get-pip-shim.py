"""Stand-in for pip's get-pip.py bootstrap that ansible-test downloads from a host this
network cannot reach: bootstrap pip with the interpreter's own ensurepip, then let pip
install the requested pip version from the package index.

Installed by scripts/sanity.sh as ~/.ansible/test/cache/get_pip_<version>.py.
"""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
sys.exit(subprocess.run([sys.executable, "-m", "pip", "install"] + args, check=False).returncode)
