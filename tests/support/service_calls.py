"""The documentation's `ros2 service call` examples as requests, filled as ros2cli fills them.

ros2cli is not installable here, so the tests do what `ros2 service call` does with the YAML
request: fill the request message field by field (ros2cli's set_message_fields), then call.
"""

from __future__ import annotations

import importlib
import re

import yaml
from node_harness import REPO

CALL = re.compile(r'ros2 service call (\S+) (\S+) "(.*?)"', re.S)


def documented_calls(*documents: str) -> list[tuple[str, str, object]]:
    """(service, type, request YAML) of every `ros2 service call` in `documents`, in reading order."""
    text = "".join((REPO / document).read_text() for document in documents)
    return [(name, kind, yaml.safe_load(body)) for name, kind, body in CALL.findall(text)]


def message_type(name: str):
    """'rcl_interfaces/srv/SetParameters' or 'rcl_interfaces/Parameter' -> the class."""
    package, *middle, leaf = name.split("/")
    return getattr(importlib.import_module(f"{package}.{middle[0] if middle else 'msg'}"), leaf)


def filled(msg, values: dict):
    """Set a message's fields from YAML values as ros2cli's set_message_fields does."""
    types = msg.get_fields_and_field_types()
    for field, value in values.items():
        kind = types[field]
        if kind.startswith("sequence<") and "/" in kind:
            element = message_type(kind[len("sequence<") : -1])
            setattr(msg, field, [filled(element(), item) for item in value])
        elif "/" in kind:
            filled(getattr(msg, field), value)
        else:
            setattr(msg, field, value)
    return msg
