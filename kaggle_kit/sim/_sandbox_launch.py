"""Start a sandboxed kernel: own user, PID, mount and IPC namespaces (and network, without internet), then exec it.

Run as a script with the standard library only (``python -I -S _sandbox_launch.py CONFIG -- KERNEL_ARGV...``), as the
first process of the kernel's session. The config (JSON, written by :mod:`kaggle_kit.sim.sandbox`) names the outside
user and group the session's root maps to, whether the internet is on, the folder on which the new root is built and
the steps that build it (a tmpfs, read-only binds of the Python runtime, the session's tree at ``/kaggle``, ...).

Processes, outermost first (the kernel's session sees only the last two)::

    launcher   host namespaces; the pid Jupyter knows; writes the user namespace's id maps, then waits
    keeper     new user (and the other) namespaces; outside the new PID namespace, so it forks its init and waits
    init       PID 1 of the session: builds nothing more, reaps orphans, ends the session when the kernel ends
    kernel     root inside, an unprivileged id outside, Docker's default capabilities, the new root only

Every process dies with its parent (``PR_SET_PDEATHSIG``), and the session's PID namespace dies with its init, so
killing any of them ends the whole session. Called by root, the launcher binds the host's folders in a mount namespace
of its own first (the outside id may not traverse them) and the keeper's namespaces lock those mounts; called by
anyone else, the init binds them inside the new user namespace. Either way the old root is detached after
``pivot_root``, so nothing of the host outside the binds stays reachable. The sandbox's probe runs the same path with
a trivial command, to find out whether all of this works here.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import sys

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_MNT_DETACH = 0x2
_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_CAP_VERSION_3 = 0x20080522
# pivot_root has no libc wrapper; its number depends on the architecture.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "ppc64": 203, "s390x": 217}
# What Docker grants a container's root by default (and Kaggle's containers run as root): no CAP_SYS_ADMIN, so no
# mounts, and no CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE...
_KEPT_CAPS = frozenset({0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31})
_EXIT_SETUP = 70  # the sandbox could not be built (reported as such by the caller)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


class SetupError(Exception):
    """A step of building the sandbox failed."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(value: str | None) -> bytes | None:
        return None if value is None else os.fsencode(value)

    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {source} on {target}")


def _prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl({option}, {arg})")


def _inside(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _make_point(place: str, source: str | None) -> None:
    """The mount point for ``source`` at ``place``: a folder, or an empty file for a file."""
    if source is not None and not os.path.isdir(source):
        os.makedirs(os.path.dirname(place), exist_ok=True)
        if not os.path.exists(place):
            open(place, "wb").close()
    else:
        os.makedirs(place, exist_ok=True)


def _bind(source: str, place: str, *, read_only: bool, recursive: bool) -> None:
    _make_point(place, source)
    _mount(source, place, None, _MS_BIND | (_MS_REC if recursive else 0))
    if read_only:
        # A bind takes MS_RDONLY only on a remount of the bind itself.
        _mount(None, place, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


def build_root(root: str, steps: list[dict]) -> None:
    """Lay the new root out on ``root`` (host paths stay outside it): a tmpfs, then each step in order."""
    _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755")
    for step in steps:
        op, target = step["op"], step["target"]
        place = _inside(root, target)
        if op == "bind":
            _bind(step["source"], place, read_only=step["read_only"], recursive=step.get("recursive", False))
        elif op == "dev":
            # A device node from the host's /dev: its own superblock still allows device access (a tmpfs mounted in a
            # user namespace would not).
            _make_point(place, step["source"])
            _mount(step["source"], place, None, _MS_BIND)
        elif op == "tmpfs":
            os.makedirs(place, exist_ok=True)
            _mount("tmpfs", place, "tmpfs", _MS_NOSUID | _MS_NODEV, f"mode={step['mode']}")
        elif op == "dir":
            os.makedirs(place, exist_ok=True)
        elif op == "symlink":
            os.makedirs(os.path.dirname(place), exist_ok=True)
            os.symlink(step["link"], place)
        elif op == "read_only":
            # Per mount (MS_BIND): the filesystem under it, and its other mounts, stay as they are.
            _mount(None, place, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
        else:
            raise SetupError(f"unknown step {op!r}")


def _private_mounts() -> None:
    """Nothing mounted from here on may propagate back to the host's mount namespace."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)


def _pivot_here() -> None:
    """Make the working folder the root and detach the old one, so no path leads back to the host's files."""
    number = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise SetupError(f"pivot_root's system call number is not known for {os.uname().machine}")
    _check(_libc.syscall(number, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", _MNT_DETACH), "detach the old root")
    os.chdir("/")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_capabilities() -> None:
    """Keep Docker's default capabilities: after exec, root's capabilities are its bounding set."""
    with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as fh:
        last = int(fh.read())
    for cap in range(last + 1):
        if cap not in _KEPT_CAPS:
            _prctl(_PR_CAPBSET_DROP, cap)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    for half in data:
        half.inheritable = 0
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


def _map_ids(pid: int, uid: int, gid: int, *, privileged: bool) -> None:
    """Root inside the keeper's user namespace is ``uid``/``gid`` outside, and nothing else is mapped."""
    if not privileged:
        _write(f"/proc/{pid}/setgroups", "deny")  # required before an unprivileged gid_map
    _write(f"/proc/{pid}/uid_map", f"0 {uid} 1\n")
    _write(f"/proc/{pid}/gid_map", f"0 {gid} 1\n")


def _exit_status(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else 1


def _wait_for(child: int) -> int:
    """Reap children until ``child`` ends; its exit status."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child:
            return _exit_status(status)


def _ignore_group_signals() -> None:
    # Jupyter interrupts and stops the kernel by signalling its process group, which these processes share: the
    # kernel gets each signal itself; the processes around it must not die of one.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)


def _report(message: str) -> None:
    os.write(2, f"kaggle-kit sandbox: cannot isolate the kernel: {message}\n".encode())


def _init(config: dict, command: list[str]) -> int:
    """PID 1 of the session: finish the root, start the kernel, reap, and end with the kernel."""
    root = config["newroot"]
    if config["prebuilt"]:
        # The launcher built the root in a more privileged mount namespace, so here it is locked and pivot_root
        # refuses it; a bind of it made here is not (what it holds stays locked: read-only stays read-only). The
        # working folder is the root (the launcher went there): this id may not traverse the host's path to it.
        _mount(".", ".", None, _MS_BIND | _MS_REC)
        os.chdir(os.path.join("..", os.path.basename(root)))  # into the bind just made
    else:
        _private_mounts()
        build_root(root, config["steps"])
        os.chdir(root)
    _mount("proc", "proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    _pivot_here()
    kernel = os.fork()
    if kernel == 0:
        try:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_DFL)
            os.chdir(config["cwd"])
            _drop_capabilities()
            # ipykernel polls for the process that started it; here its parent is this init, pid 1, which it takes
            # for an orphaning unless told that its parent is pid 1. The poll is not needed: the kernel dies with
            # its parents (PR_SET_PDEATHSIG).
            os.execve(command[0], command, dict(os.environ, JPY_PARENT_PID="1"))
        except (OSError, SetupError) as exc:
            _report(str(exc))
        os._exit(_EXIT_SETUP)
    _ignore_group_signals()
    return _wait_for(kernel)


def _keeper(config: dict, command: list[str], ready: int, go: int) -> int:
    """Enter the new namespaces, wait for the id maps, become root inside, and start the session's init."""
    privileged = os.geteuid() == 0
    if privileged:
        os.setgroups([])  # no host group (root's above all) may follow into the session
    flags = _CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC
    if not config["internet"]:
        flags |= _CLONE_NEWNET
    _check(_libc.unshare(flags), "unshare")
    os.write(ready, b"1")
    if os.read(go, 1) != b"1":
        raise SetupError("the launcher could not map the session's user and group")
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    if not config["internet"]:
        _loopback_up()
    init = os.fork()
    if init == 0:
        try:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            os._exit(_init(config, command))
        except (OSError, SetupError) as exc:
            _report(str(exc))
        os._exit(_EXIT_SETUP)
    _ignore_group_signals()
    return _wait_for(init)


def launch(config: dict, command: list[str]) -> int:
    privileged = os.geteuid() == 0
    if privileged:
        # Root binds the host's folders while it can still traverse all of them, in a mount namespace of its own.
        _check(_libc.unshare(_CLONE_NEWNS), "unshare the mount namespace")
        _private_mounts()
        build_root(config["newroot"], config["steps"])
        os.chdir(config["newroot"])  # the keeper's new mount namespace keeps the working folder: the init starts there
        uid, gid = config["uid"], config["gid"]
    else:
        uid, gid = os.geteuid(), os.getegid()
    config = dict(config, prebuilt=privileged)
    to_launcher, from_keeper = os.pipe()
    to_keeper, from_launcher = os.pipe()
    keeper = os.fork()
    if keeper == 0:
        try:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            os.close(to_launcher)
            os.close(from_launcher)
            os._exit(_keeper(config, command, from_keeper, to_keeper))
        except (OSError, SetupError) as exc:
            _report(str(exc))
        os._exit(_EXIT_SETUP)
    os.close(from_keeper)
    os.close(to_keeper)
    if os.read(to_launcher, 1) != b"1":
        return _wait_for(keeper)
    try:
        _map_ids(keeper, uid, gid, privileged=privileged)
        os.write(from_launcher, b"1")
    except OSError as exc:
        _report(f"mapping the session's user: {exc}")
    os.close(from_launcher)
    _ignore_group_signals()
    return _wait_for(keeper)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: _sandbox_launch.py CONFIG -- COMMAND...", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as fh:
        config = json.load(fh)
    return launch(config, argv[2:])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (OSError, SetupError) as exc:
        _report(str(exc))
        sys.exit(_EXIT_SETUP)
