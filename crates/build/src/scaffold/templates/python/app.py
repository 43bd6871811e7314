"""{{name}}: a Hypergraph task in Python (see README.md)."""

import wit_world

from hypergraph_guest import context, log
{{#workflow}}
from hypergraph_guest import workflow
{{/workflow}}


class WitWorld(wit_world.WitWorld):
    def greet(self, name: str) -> str:
        log.info(f"greeting {name} (attempt {context.attempt()})")
        print(f"Hello, {name}!")  # stdout lines become log lines of the run
        return f"Hello, {name}!"
{{#workflow}}
    def greet_all(self, names: list[str]) -> list[str]:
        # Children are tasks of this deployment: `<deployment>/greet`.
        deployment = context.task_name().split("/")[0]
        children = workflow.start_all(f"{deployment}/greet", names)
        return workflow.join(children, type=str)
{{/workflow}}
