"""Access to the bindings componentize-py generated for the task's world (``wit_world``).

They exist only inside a component build, and only for the interfaces the world imports (the
workflow interface only in a world that includes ``hypergraph:task/workflow``). A component has no
file system at run time: componentize-py snapshots the interpreter after importing the app, so
every module must be imported then. This module therefore imports every binding the SDK may use
when it is itself imported, and remembers which ones the world has.
"""

import importlib

_MODULES = (
    "log",
    "context",
    "kv",
    "workflow",
    "wasi_http_types",
    "outgoing_handler",
    "streams",
    "poll",
)

_loaded = {}
for _name in _MODULES:
    try:
        _loaded[_name] = importlib.import_module("wit_world.imports." + _name)
    except ImportError:
        pass


def imports(name: str):
    """The generated module ``wit_world.imports.<name>``, with a clear error when it is missing."""
    module = _loaded.get(name)
    if module is not None:
        return module
    if name == "workflow":
        raise RuntimeError(
            "hypergraph_guest.workflow needs a workflow world: in wit/world.wit, "
            "`include hypergraph:task/workflow@0.1.0;` instead of hypergraph:task/task"
        )
    raise RuntimeError(
        f"the world has no `{name}` import (`wit_world.imports.{name}`): does wit/world.wit "
        "include hypergraph:task/task@0.1.0? The SDK works only inside a component built by "
        "`hypergraph build`, and must be imported by the app module (at build time)."
    )
