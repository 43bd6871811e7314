"""Python guest of the host's guarantee tests: fresh instances, journaled non-determinism,
clear failures, kv and a workflow that must resume without re-running its children."""

import json
import os
import random
import time
import uuid

import wit_world
from hypergraph_guest import context, kv, log, workflow

count = 0


def deployment() -> str:
    return context.task_name().split("/")[0]


class WitWorld(wit_world.WitWorld):
    def bump(self) -> int:
        global count
        count += 1
        return count

    def entropy(self) -> str:
        names = {f"key-{i}" for i in range(20)}
        table = {str(object()): i for i in range(3)}  # object ids vary with allocation
        value = {
            "time": time.time(),
            "monotonic": time.monotonic(),
            "random": random.random(),
            "uuid4": str(uuid.uuid4()),
            "urandom": os.urandom(8).hex(),
            "set_order": list(names),
            "hash": hash("hypergraph"),
            "dict_keys": len(table),
        }
        log.info(f"entropy {value['uuid4']}")
        return json.dumps(value)

    def fail(self, message: str) -> int:
        def inner():
            raise ValueError(message)

        inner()
        return 0

    def remember(self, key: str, value: str):
        previous = kv.get_string(key)
        kv.set_string(key, value)
        return previous

    def work(self, key: str, n: int, sleep_ms: int) -> int:
        done = int(kv.get_string(f"executions/{key}") or "0")
        kv.set_string(f"executions/{key}", str(done + 1))
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
        return n * 2

    def executions(self, key: str) -> int:
        return int(kv.get_string(f"executions/{key}") or "0")

    def fan_out(self, prefix: str, n: int, sleep_ms: int) -> list[int]:
        inputs = [{"key": f"{prefix}/{i}", "n": i, "sleep-ms": sleep_ms} for i in range(n)]
        children = workflow.start_all(f"{deployment()}/work", inputs)
        return workflow.join(children, type=int)
