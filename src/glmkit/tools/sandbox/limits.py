"""The resource limits of one ``python`` sandbox call."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one ``python`` call."""

    cpu_seconds: int = 10
    wall_seconds: float = 20.0
    memory_mb: int = 1024
    max_output_chars: int = 20_000
    max_file_mb: int = 64
    max_open_files: int = 256
    max_processes: int = 64  # RLIMIT_NPROC: in a user namespace or as run_as_uid (see the module docstring)
    run_as_uid: int = 65534  # used only when glmkit runs as root (nobody)
    run_as_gid: int = 65534  # nogroup
    max_returned_files: int = 20
    max_returned_images: int = 8
    max_image_pixels: int = 25_000_000
