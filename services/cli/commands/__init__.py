"""One module per `mesh-llm` command: each adds its parser (`add_parser`) and runs itself
(the `run` it sets on its parser)."""

from . import (
    authority,
    credentials,
    dev,
    discover,
    enrol,
    gpus,
    inspect,
    invite,
    launch,
    members,
    models,
    revoke,
    serve,
    service,
    status,
)

COMMANDS = [
    serve,
    models,
    discover,
    launch,
    invite,
    revoke,
    members,
    status,
    authority,
    enrol,
    credentials,
    inspect,
    gpus,
    dev,
    service,
]
