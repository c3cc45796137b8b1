"""The ``ember`` command: ``ember demo``, ``ember inspect``, ``ember cache`` (also
``python -m ember ...``).

>>> ember demo --epochs 10
>>> ember inspect examples/inspect_example.py:loss_fn --arg "f32[4,8]" --arg "i64[4]"
"""
from __future__ import annotations

import sys
from typing import Callable


def _demo(argv: list[str]) -> int:
    from ember.demo import main as demo_main

    return demo_main(argv)


def _cache(argv: list[str]) -> int:
    from ember.diskcache import main as cache_main

    return cache_main(argv)


def _inspect(argv: list[str]) -> int:
    from ember.inspect.cli import main as inspect_main

    return inspect_main(argv)


# Subcommand -> (entry point taking the remaining arguments, one-line help).
COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "demo": (_demo, "train a small MLP on scikit-learn's handwritten digits"),
    "inspect": (_inspect, "compile a function from a script on random inputs and explain it"),
    "cache": (_cache, "show ('info') or empty ('clear') the persistent kernel cache"),
}


def _usage() -> str:
    lines = ["usage: ember <command> [options]", "", "commands:"]
    lines += [f"  {name:<10}{help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n'ember <command> --help' describes a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``ember <command> [options]``; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from ember.version import __version__, release
        print(f"ember {release} (ember.__version__ {__version__}: the PyTorch API it "
              f"follows)")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"ember: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return command[0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
