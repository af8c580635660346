"""The `cto-dagster` commands, one module a command: each adds its own options
(`add_parser`) and runs (`run`). Importing them imports no Dagster: `plan` answers instantly."""
