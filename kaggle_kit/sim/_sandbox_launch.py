"""Start a sandboxed kernel: new mount (and network) namespace, the session tree at ``/kaggle``, then exec the kernel.

Run as a script with the standard library only (``python -I -S _sandbox_launch.py CONFIG -- KERNEL_ARGV...``), as the
first process of the kernel's session; it replaces itself with the kernel, so the kernel keeps its pid and process
group. ``python -I -S _sandbox_launch.py --probe DIR`` only checks that the namespaces and mounts can be made.

The host's root is never modified: the launcher builds a new root on a tmpfs in its private mount namespace, binds
every top-level entry of the host's root into it, adds ``/kaggle`` (the session tree, ``input`` read-only, each input
bound read-only under it) and chroots there. Without the internet it also gets its own network namespace with only a
loopback interface, on which nothing of the host listens.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import socket
import struct
import sys

_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_MNT_DETACH = 0x2
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(value: str | None) -> bytes | None:
        return None if value is None else os.fsencode(value)

    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {source} on {target}")


def _bind(source: str, target: str, *, read_only: bool, recursive: bool = False) -> None:
    _mount(source, target, None, _MS_BIND | (_MS_REC if recursive else 0))
    if read_only:
        # A bind mount takes MS_RDONLY only on a remount of the bind itself.
        _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)


def _unshare(internet: bool) -> None:
    flags = _CLONE_NEWNS | (0 if internet else _CLONE_NEWNET)
    _check(_libc.unshare(flags), "unshare")
    # Nothing mounted here may propagate back to the host's mount namespace.
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _build_root(newroot: str, tree: str, mounts: list[list[str]]) -> None:
    _mount("tmpfs", newroot, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755")
    for name in sorted(os.listdir("/")):
        if name == "kaggle":  # a real /kaggle (on Kaggle itself) is replaced by the session's tree
            continue
        source, target = "/" + name, os.path.join(newroot, name)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        elif os.path.isdir(source):
            os.mkdir(target)
            _bind(source, target, read_only=False, recursive=True)
        elif os.path.exists(source):
            open(target, "wb").close()
            _bind(source, target, read_only=False)
    # The recursive bind of the folder holding ``newroot`` copied the half-built root into itself; drop that copy.
    nested = os.path.join(newroot, os.path.relpath(newroot, "/"))
    if os.path.ismount(nested):
        _check(_libc.umount2(os.fsencode(nested), _MNT_DETACH), f"umount {nested}")
    kaggle = os.path.join(newroot, "kaggle")
    os.mkdir(kaggle)
    _bind(tree, kaggle, read_only=False)
    input_dir = os.path.join(kaggle, "input")
    _bind(input_dir, input_dir, read_only=False)
    for source, target in mounts:
        _bind(source, os.path.join(input_dir, target), read_only=True, recursive=True)
    _mount(None, input_dir, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)


def _probe(folder: str) -> int:
    _unshare(internet=False)
    _loopback_up()
    _mount("tmpfs", folder, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755")
    os.mkdir(os.path.join(folder, "input"))
    _bind(os.path.join(folder, "input"), os.path.join(folder, "input"), read_only=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--probe":
        return _probe(argv[1])
    if len(argv) < 3 or argv[1] != "--":
        print("usage: _sandbox_launch.py CONFIG -- KERNEL_ARGV... | --probe DIR", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as fh:
        config = json.load(fh)
    _unshare(internet=config["internet"])
    if not config["internet"]:
        _loopback_up()
    _build_root(config["newroot"], config["tree"], config["mounts"])
    os.chroot(config["newroot"])
    os.chdir("/kaggle/working")
    kernel = argv[2:]
    os.execv(kernel[0], kernel)
    return 127


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as exc:
        print(f"kaggle-kit sandbox: cannot isolate the kernel: {exc}", file=sys.stderr)
        sys.exit(70)
