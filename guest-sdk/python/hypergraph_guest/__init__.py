"""Write Hypergraph tasks in Python.

A Hypergraph task is one exported function of a WebAssembly component. ``hypergraph build``
turns a Python project (``app.py`` plus ``wit/world.wit``) into such a component with
componentize-py, and puts this package on the import path. It gives a task what the host
provides beyond WASI:

* :mod:`hypergraph_guest.log`: log lines stored with the run (``print`` works too: stdout and
  stderr lines become log lines);
* :mod:`hypergraph_guest.context`: the run id, task name and attempt number;
* :mod:`hypergraph_guest.kv`: durable key-value storage of the deployment;
* :mod:`hypergraph_guest.http`: outbound HTTP to the deployment's allowlisted hosts;
* :mod:`hypergraph_guest.workflow`: children (start, join, call), durable sleep and events, for
  workflow components;
* :func:`to_json` / :func:`from_json`: the JSON mapping of WIT values, with dataclasses or plain
  dicts.

Every invocation runs in a fresh instance: module globals start from their initial value on every
run. Clocks (``time.time()``), randomness (``random``, ``uuid.uuid4()``, ``os.urandom``) and hash
seeds come from the host and are journaled, so a replay sees the same values.
"""

from . import context, http, kv, log, workflow
from ._json import dumps, from_json, loads, to_json
from .log import debug, error, info, trace, warn
from .workflow import Child, ChildError, StartError

__all__ = [
    "Child",
    "ChildError",
    "StartError",
    "context",
    "debug",
    "dumps",
    "error",
    "from_json",
    "http",
    "info",
    "kv",
    "loads",
    "log",
    "to_json",
    "trace",
    "warn",
    "workflow",
]
