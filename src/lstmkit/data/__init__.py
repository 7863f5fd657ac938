"""Data for lstmkit: generators of the classic long-time-lag benchmark tasks."""

# Every public name of longlag, re-exported; they are listed once, in longlag.__all__.
from lstmkit.data.longlag import *  # noqa: F403
from lstmkit.data.longlag import __all__  # noqa: F401
