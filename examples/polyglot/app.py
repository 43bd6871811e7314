"""polyglot: a Python workflow whose children are a Rust, a JavaScript and a C task."""

from dataclasses import dataclass

import wit_world
from wit_world import Card

from hypergraph_guest import log, workflow


@dataclass
class Digest:
    bytes: int
    adler32: int
    crc32: int


class WitWorld(wit_world.WitWorld):
    def card(self, name: str, text: str) -> Card:
        greeting = workflow.call("greet/greet", {"name": name}, type=str)  # Rust
        headline = workflow.start("quotes/headline", text)  # JavaScript
        digest = workflow.start("checksum/checksum-text", text)  # C
        headline, digest = workflow.join([headline, digest])
        digest = Digest(**digest)
        log.info(f"{greeting} | {headline} | adler32 {digest.adler32:08x}")
        return Card(greeting, headline, digest.adler32, digest.crc32)
