"""Small helpers shared by every layer: atomic file writes, user-facing errors, option metadata."""

from lstmkit.utils.errors import UserError
from lstmkit.utils.io import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = [
    "UserError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
]
