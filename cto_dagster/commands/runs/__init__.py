"""What the commands that start or read runs share: the Dagster instance they use, the code
server a launch starts, a launch through it or through a running webserver, runs whose process
died, and a finished run's summary."""
