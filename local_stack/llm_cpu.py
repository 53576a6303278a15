"""llama.cpp's CPU code as installed: one backend per x86-64 CPU family, the best chosen at run time.

`make install` builds llama-cpp-python from source with runtime CPU dispatch
(LLAMA_CMAKE_ARGS in the Makefile: GGML_NATIVE=OFF, GGML_BACKEND_DL=ON, GGML_CPU_ALL_VARIANTS=ON):
the CPU backend is built once per CPU family (x64, sse42, sandybridge, haswell, skylakex, icelake,
zen4, sapphirerapids, ...) as `libggml-cpu-<family>.so` in llama_cpp's lib folder, and ggml loads
the one with the highest score this CPU can run. So the same install runs on any x86-64 CPU, and
nothing depends on the CPU of the machine that built it. See docs/llm-engine.md.

ggml looks for those files beside the Python executable and in the working folder only, so
`load_cpu_backends` points it at llama_cpp's own lib folder before the first model loads (a native
build, with the CPU backend linked in, needs nothing and is left as it is).
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
from pathlib import Path

VARIANT_GLOB = "libggml-cpu-*.so"


def lib_dir() -> Path | None:
    """llama_cpp's folder of shared libraries, or None when llama-cpp-python is not installed."""
    spec = importlib.util.find_spec("llama_cpp")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(folder) / "lib"
        if lib.is_dir():
            return lib
    return None


def cpu_variants() -> list[str]:
    """The CPU families the install has a backend for, by name (["alderlake", ..., "x64", "zen4"]);
    [] for a build with one CPU backend linked in (a native or single-target build)."""
    lib = lib_dir()
    if lib is None:
        return []
    return sorted(p.name[len("libggml-cpu-"):-len(".so")] for p in lib.glob(VARIANT_GLOB))


def load_cpu_backends() -> int:
    """Register the best CPU backend for this CPU (once per process) when the install has one per
    CPU family; returns how many backends are registered (0: none yet, a linked-in build registers
    its own on the first model load). Imports llama_cpp; raises ImportError without it."""
    import llama_cpp  # noqa: F401  (loads libggml and libggml-base, which the backends link to)

    lib = lib_dir()
    if lib is None or not cpu_variants():
        return 0
    ggml = ctypes.CDLL(str(_loaded_libggml() or lib / "libggml.so"))
    ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
    if ggml.ggml_backend_reg_count() == 0:
        ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
        ggml.ggml_backend_load_all_from_path(str(lib).encode())
    return int(ggml.ggml_backend_reg_count())


def _loaded_libggml() -> Path | None:
    """The libggml file this process already mapped (through libllama), so that the backends
    register with that copy of ggml's registry and not with a second one."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return None
    for line in maps.read_text(encoding="utf-8", errors="replace").splitlines():
        path = line.split(maxsplit=5)[-1]
        if re.search(r"/libggml\.so(\.\d+)*$", path):
            return Path(path)
    return None


def cpu_features() -> dict[str, str]:
    """The features the CPU backend in use was compiled for, from llama.cpp's system line
    ({"AVX2": "1", "AVX512": "1", "REPACK": "1", ...}); {} before any backend is registered."""
    import llama_cpp

    line = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    out: dict[str, str] = {}
    for part in line.split("|"):
        key, sep, value = part.rpartition(" = ")
        if sep:
            out[key.split(":")[-1].strip()] = value.strip()
    return out
