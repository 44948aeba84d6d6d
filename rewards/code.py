"""Code rewards: does the model's Python code pass the row's tests? Run in a best-effort sandbox.

Example::

    >>> CodeTests(timeout_s=5)(["Write add."], ["```python\\ndef add(a, b):\\n    return a + b\\n```"], tests=["assert add(1, 2) == 3"])
    [1.0]

The code (last ```python block, else last ``` block, else the whole text) runs, then the row's ``tests``
(a string of Python statements such as asserts, or a list of them), in a fresh ``python -I -B``. A pass
means every test ran without raising, as the harness reports with a per-run secret: code that exits
early (``sys.exit(0)``) does not pass. The sandbox is best-effort, NOT a security boundary like a container.
Its layers (``sandbox_layers()`` lists the optional ones that work on this machine):

* process: own session, group-killed at ``timeout_s`` (wall clock); fresh temp dir as cwd and HOME; no
  inherited environment (no API keys); output to an unlinked file. rlimits: AS = ``memory_mb``, CPU =
  ``cpu_s`` (default timeout_s + 1), FSIZE 16 MiB, CORE 0, NPROC 0 (stops fork and threads for non-root only).
* seccomp (Linux x86-64/aarch64; kernel-enforced, also for root): fork, vfork, process clone, exec, socket,
  ptrace, io_uring and signals to other processes fail with EPERM; threads are allowed.
* landlock (Linux >= 5.13; kernel-enforced, also for root): files read only beneath the temp dir, the
  interpreter's installation and the system's shared libraries (so not HOME's ``.netrc`` or Hub token, not
  SSH keys, not ``/proc/<trainer pid>/environ`` with its API keys, not /etc); created, written, removed or
  renamed only beneath the temp dir (and /dev/null); TCP bind/connect denied (ABI >= 4); outside signals
  denied (ABI >= 6).
* audit: a ``sys.addaudithook`` hook (cannot be removed from Python; any OS) refusing fork/exec/subprocess/
  os.system, sockets, os.kill, ctypes, gc object walking, and writes, removes, renames, chmod/chown outside
  the temp dir.

Not isolated: CPU, memory bandwidth, disk I/O; chmod/chown outside the temp dir by non-Python means; and,
without landlock, reading what the training user can read (a warning says so when a code reward starts).
Without seccomp and landlock (macOS, old kernels) only the audit hook stops fork, network and writes, and it
sees Python calls, not C code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from rewards import register, text

log = logging.getLogger(__name__)
LAYERS = ("seccomp", "landlock", "audit")
_FSIZE = 16 * 2**20
_WAITID = hasattr(os, "waitid")  # not on macOS, which falls back to poll()
_FENCE = re.compile(r"```([\w+-]*)[ \t]*\n(.*?)```", re.DOTALL)
# What sandboxed code may read under landlock (besides its temp dir): the interpreter's installation (stdlib,
# extension modules, site-packages of this environment) and the system's shared libraries. Not HOME, not
# /proc/<other pid> (the trainer's environment holds W&B and Hub keys), not /etc.
_READABLE = sorted(
    {
        os.path.realpath(p)
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, os.path.dirname(os.path.realpath(sys.executable)))
    }
    | {
        p
        for p in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share/zoneinfo", "/etc/ld.so.cache", "/etc/localtime")
        if os.path.exists(p)
    }
)

# Runs in the child (`python -I -B -c _BOOT`), reading its job as JSON on stdin; kept stdlib-only.
_BOOT = r"""
import contextlib, json, os, resource, sys, traceback, types
def _kernel(cfg, tmp, layers):
    import ctypes, platform, struct
    libc, pid = ctypes.CDLL(None, use_errno=True), os.getpid()
    table = {"x86_64": (0xC000003E, 56, 62, 234, (57, 58, 59, 322, 41, 101, 310, 311, 425, 200, 424)),
             "aarch64": (0xC00000B7, 220, 129, 131, (221, 281, 198, 117, 270, 271, 425, 130, 424))}.get(platform.machine())
    if table is None or libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS, required by both layers
        return
    if "landlock" in cfg["layers"] and (abi := libc.syscall(444, None, 0, 1)) >= 1:
        # read file/dir, write, remove, make*, + refer, + truncate: all denied but beneath the rules below
        fs = 0x1FFE | (0x2000 if abi >= 2 else 0) | (0x4000 if abi >= 3 else 0)
        attr = struct.pack("QQQ", fs, 3, 3)[: 8 if abi < 4 else 16 if abi < 6 else 24]  # + TCP bind/connect, + signal/unix scope
        ruleset = libc.syscall(444, attr, len(attr), 0)
        rules = [(tmp, fs), ("/dev/null", 0x6 | (fs & 0x4000)), ("/dev/urandom", 0x4), ("/proc/self", 0xC)]
        rules += [(path, 0xC if os.path.isdir(path) else 0x4) for path in cfg["read"]]  # the interpreter's own files
        for path, access in rules:
            with contextlib.suppress(OSError):
                parent = os.open(path, os.O_PATH | os.O_CLOEXEC)
                libc.syscall(445, ruleset, 1, struct.pack("=Qi", access, parent), 0)
                os.close(parent)
        if ruleset >= 0 and libc.syscall(446, ruleset, 0) == 0:
            layers.append("landlock")
    if "seccomp" in cfg["layers"]:
        arch, clone, kill, tgkill, deny = table
        LD, JEQ, JGE, JSET, RET, OK, EPERM = 0x20, 0x15, 0x35, 0x45, 0x06, 0x7FFF0000, 0x50001
        prog = [(LD, 0, 0, 4), (JEQ, 1, 0, arch), (RET, 0, 0, OK), (LD, 0, 0, 0), (JGE, 0, 1, 0x40000000), (RET, 0, 0, EPERM)]
        prog += [ins for nr in deny for ins in ((JEQ, 0, 1, nr), (RET, 0, 0, EPERM))]
        prog += [(JEQ, 0, 1, 435), (RET, 0, 0, 0x50026)]  # clone3 -> ENOSYS: glibc falls back to clone
        prog += [(JEQ, 0, 4, clone), (LD, 0, 0, 16), (JSET, 0, 1, 0x10000), (RET, 0, 0, OK), (RET, 0, 0, EPERM)]
        for nr in (kill, tgkill):  # signals only to itself
            prog += [(JEQ, 0, 4, nr), (LD, 0, 0, 16), (JEQ, 0, 1, pid), (RET, 0, 0, OK), (RET, 0, 0, EPERM)]
        code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in prog + [(RET, 0, 0, OK)]))
        fprog = struct.pack("HxxxxxxQ", len(prog) + 1, ctypes.addressof(code))
        if libc.prctl(22, 2, fprog, 0, 0) == 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
            layers.append("seccomp")
def _main():
    cfg = json.loads(sys.stdin.read())
    out, tmp, nonce, layers = os.dup(1), os.path.realpath(cfg["tmp"]), cfg["nonce"], []
    report = lambda msg: os.write(out, f"\n{nonce} {msg}\n".encode())  # own fd: user code closing stdout does not matter
    for name, value in (("AS", cfg["mem"]), ("CPU", cfg["cpu"]), ("FSIZE", cfg["fsize"]), ("CORE", 0), ("NPROC", 0)):
        with contextlib.suppress(AttributeError, ValueError, OSError):  # e.g. RLIMIT_AS on macOS
            resource.setrlimit(getattr(resource, "RLIMIT_" + name), (value, value))
    with contextlib.suppress(Exception):  # a layer that cannot be set up is simply not listed in `layers`
        _kernel(cfg, tmp, layers)
    for name in [m for m in sys.modules if m.split(".")[0] in ("ctypes", "_ctypes")]:
        del sys.modules[name]  # so that user code must import ctypes again, which the hook refuses
    PATHS = {"os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),), "os.rename": ((0, 2), (1, 3)),
             "os.link": ((1, 3),), "os.symlink": ((1, 2),), "os.chmod": ((0, 2),), "os.chown": ((0, 3),),
             "os.utime": ((0, 3),), "os.truncate": ((0, None),), "os.setxattr": ((0, None),), "os.removexattr": ((0, None),)}
    DENY = {"os.fork", "os.forkpty", "os.exec", "os.spawn", "os.posix_spawn", "os.system", "subprocess.Popen", "os.kill",
            "os.killpg", "signal.pthread_kill", "gc.get_objects", "gc.get_referrers", "gc.get_referents"}
    def inside(path, dir_fd=None):
        base = os.getcwd() if dir_fd in (None, -1, -100) else os.readlink(f"/proc/self/fd/{dir_fd}")
        path = os.readlink(f"/proc/self/fd/{path}") if isinstance(path, int) else os.fsdecode(path)
        real = os.path.realpath(os.path.join(base, path))
        return real == tmp or real.startswith(tmp + os.sep) or real == os.devnull
    def hook(event, args, W=os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
        # AF_UNIX socket objects are let through for socketpair() (asyncio); connecting one is still refused.
        if event in DENY or event.startswith(("socket.", "ctypes.")) and not (event == "socket.__new__" and args[1] == 1):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0].split(".")[0] in ("ctypes", "_ctypes", "cffi", "_cffi_backend"):
            raise ImportError(f"sandbox: importing {args[0]} is not allowed")
        writes = event == "open" and not isinstance(args[0], int) and ((args[2] or 0) & W or set(args[1] or "") & set("wax+"))
        for index, fd in ((0, None),) if writes else PATHS.get(event, ()):
            ok = False
            with contextlib.suppress(OSError, TypeError, ValueError):
                ok = inside(args[index], None if fd is None else args[fd])
            if not ok:
                raise PermissionError(f"sandbox: {event} outside the sandbox directory: {args[index]!r}")
    if "audit" in cfg["layers"]:
        sys.addaudithook(hook)
        layers.append("audit")
    report("layers " + ",".join(layers))
    main = types.ModuleType("__main__")  # a clean __main__: user code cannot reach this harness through it
    sys.modules["__main__"], ok = main, True
    try:
        exec(compile(cfg["code"], "solution.py", "exec"), main.__dict__)
    except BaseException:
        traceback.print_exc()
        cfg["tests"], ok = [], False
    for i, test in enumerate(cfg["tests"]):
        try:
            exec(compile(test, f"test_{i}", "exec"), main.__dict__)
            report(f"{i} 1")
        except BaseException:
            traceback.print_exc()
            report(f"{i} 0")
            ok = False
            if not cfg["partial"]:
                break
    with contextlib.suppress(BaseException):
        sys.stdout.flush(), sys.stderr.flush()
    os._exit(0 if ok else 1)
_main()
"""


def extract_code(completion: str) -> str:
    """The last ```python (or ```py) fenced block, else the last fenced block, else the whole text."""
    blocks = _FENCE.findall(completion)
    python = [body for lang, body in blocks if lang.lower() in ("python", "python3", "py")]
    return (python or [body for _, body in blocks] or [completion])[-1]


def _wait(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait up to timeout_s, then kill the whole process group; True when it timed out."""
    deadline, timed_out = time.monotonic() + timeout_s, False
    try:
        # WNOWAIT leaves the child a zombie, so its pid (= the group id) cannot be reused before we kill the group.
        while not (os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) if _WAITID else proc.poll() is not None):
            if timed_out := time.monotonic() >= deadline:
                break
            time.sleep(0.005)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the timed-out child and any stray descendants
        proc.wait()
    return timed_out


def run_sandboxed(code: str, tests: list[str], *, timeout_s=5.0, memory_mb=512, cpu_s=None, partial=False, layers=LAYERS):
    """Run ``code`` then each test in the sandbox. Returns (per-test pass list, info dict with returncode,
    timed_out, the layers that took effect and the output tail). ``layers`` picks optional layers (for tests)."""
    nonce = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="rlft-code-", ignore_cleanup_errors=True) as tmp:
        with tempfile.TemporaryFile() as job, tempfile.TemporaryFile() as out:
            job.write(json.dumps(dict(code=code, tests=list(tests), nonce=nonce, tmp=tmp, mem=memory_mb * 2**20, cpu=int(cpu_s or math.ceil(timeout_s) + 1),
                                      fsize=_FSIZE, partial=partial, layers=list(layers), read=_READABLE)).encode())  # fmt: skip
            job.seek(0)
            env = {"PATH": os.defpath, "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
            proc = subprocess.Popen([sys.executable, "-I", "-B", "-c", _BOOT], cwd=tmp, env=env, stdin=job, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            timed_out = _wait(proc, timeout_s)
            out.seek(0)
            output = out.read(_FSIZE).decode("utf-8", errors="replace")
    lines = output.splitlines()
    marks = [line.split()[1:] for line in lines if line.startswith(nonce + " ")]  # the harness's reports
    passed = [[str(i), "1"] in marks for i in range(len(tests))]
    active = next((m[1].split(",") for m in marks if m[0] == "layers" and len(m) > 1), [])
    rest = "\n".join(line for line in lines if not line.startswith(nonce))[-2000:]
    return passed, {"returncode": proc.returncode, "timed_out": timed_out, "layers": active, "output": rest}


def sandbox_layers() -> list[str]:
    """The optional sandbox layers that take effect on this machine (rlimits and the process layer always do)."""
    return run_sandboxed("", [], timeout_s=10)[1]["layers"]


_MISSING = {
    "landlock": "code can READ every file the training user can (HOME's .netrc and Hub token, SSH keys, the trainer's "
    "environment through /proc) and write outside its temp dir by non-Python means",
    "seccomp": "fork, exec, sockets and signals are stopped only by the Python audit hook (C code can get past it)",
}
_warned: list[str] | None = None


def _warn_missing_layers() -> list[str]:
    """Once per process, when a code reward first runs: warn about each kernel layer this machine lacks."""
    global _warned
    if _warned is None:
        active = sandbox_layers()
        _warned = [name for name in _MISSING if name not in active]
        for name in _warned:
            log.warning("code_tests sandbox: no %s on this machine: %s", name, _MISSING[name])
    return _warned


def _tests(value) -> list[str]:  # a row's tests as a list of non-blank strings
    values = [] if value is None else [value] if isinstance(value, str) else value
    return [str(t) for t in values if t is not None and str(t).strip()]


def _positive(name: str, value, integer: bool, hint: str, minimum: float = 0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real) or not value > minimum:
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} > {minimum} ({hint}), got {value!r}")
    return value


@register("code_tests", description="1.0 when the completion's Python code passes the row's `tests`, run in a sandbox")
class CodeTests:
    """1.0 when the completion's code passes the row's tests in the sandbox, else 0.0; None for rows without tests.

    ``timeout_s``: wall-clock seconds per completion; ``memory_mb``: address-space limit in MiB; ``cpu_s``: CPU
    seconds (default ``timeout_s + 1``); ``tests_column``: the dataset column with the tests; ``partial``: score
    the fraction of test strings that pass instead of all-or-nothing; ``workers``: completions run in parallel.
    A sandbox that fails to start scores 0.0 and logs a warning; this reward never raises for it.
    """

    def __init__(self, timeout_s: float = 5.0, memory_mb: int = 512, cpu_s: int | None = None, tests_column: str = "tests",
                 partial: bool = False, workers: int | None = None):  # fmt: skip
        self.timeout_s = float(_positive("timeout_s", timeout_s, False, "wall-clock seconds per completion"))
        self.memory_mb = int(_positive("memory_mb", memory_mb, True, "address-space MiB; Python alone needs ~30", minimum=63))
        self.cpu_s = None if cpu_s is None else int(_positive("cpu_s", cpu_s, True, "CPU seconds per completion, or null"))
        if not isinstance(tests_column, str) or not tests_column:
            raise ValueError(f"tests_column must be the name of the dataset column holding the tests, got {tests_column!r}")
        self.tests_column, self.partial = tests_column, bool(partial)
        self.workers = None if workers is None else int(_positive("workers", workers, True, "parallel sandboxes"))
        self.__name__ = "code_tests"

    def score(self, completion, tests: list[str]) -> float:
        try:
            passed, info = run_sandboxed(extract_code(text(completion)), tests, timeout_s=self.timeout_s, memory_mb=self.memory_mb,
                                         cpu_s=self.cpu_s, partial=self.partial)  # fmt: skip
        except Exception as exc:  # the training process must survive whatever the sandbox does
            log.warning("code_tests: the sandbox failed to run (%s: %s); scoring 0.0", type(exc).__name__, exc)
            return 0.0
        return sum(passed) / len(tests) if self.partial else float(all(passed) and info["returncode"] == 0)

    def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        _warn_missing_layers()
        column = kwargs.get(self.tests_column)
        rows = [_tests(t) for _, t in zip(completions, [None] * len(completions) if column is None else column, strict=True)]
        todo = [i for i, tests in enumerate(rows) if tests]
        workers = min(self.workers or min(8, os.cpu_count() or 1), max(1, len(todo)))
        with ThreadPoolExecutor(max_workers=workers) as pool:  # sandboxes are processes: threads suffice to overlap them
            done = dict(zip(todo, pool.map(lambda i: self.score(completions[i], rows[i]), todo), strict=True))
        return [done.get(i) for i in range(len(completions))]
