"""The use verbs of a trained run, one module each: ``evaluate``, ``predict``, ``inspect``,
``generate``, ``translate``, ``transcribe``.

Each verb module holds its options (a frozen ``...Config`` dataclass whose fields become the
command's flags), the function the command calls with it, and the config-free function that the
command and the Python API (:mod:`lstmkit.api`) share. :mod:`lstmkit.infer.load` rebuilds a run
from its checkpoint and checks that its task has the verb (:attr:`lstmkit.tasks.base.Task.
capabilities`); :mod:`lstmkit.infer.inputs` reads the user's inputs and files.

Imports point down: infer imports train (checkpoint loading) and tasks; train never imports
infer. The command table of :mod:`lstmkit.cli.main` lists each verb once.
"""
