"""``python -m fusionlog.llm.server --model X.gguf --port 8765``: llama_cpp.server with CPU repacking off.

The plain server crashes (segfault) on its first multi-token prompt on AMX CPUs with
llama-cpp-python 0.3.36; this is the same server, same arguments (see llama_cpp._without_cpu_repack).
"""
from __future__ import annotations

import sys
from typing import Optional

from fusionlog.llm.llama_cpp import _without_cpu_repack


def serve_llama_cpp(argv: Optional[list[str]] = None) -> None:
    """``python -m llama_cpp.server`` with CPU weight repacking off."""
    from llama_cpp.server.__main__ import main

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    with _without_cpu_repack():
        main()


if __name__ == "__main__":
    serve_llama_cpp()
