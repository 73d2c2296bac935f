"""The example flow: proves a worker picks up a run, loads code from flows/ and reports back."""

import platform
import time

from prefect import flow, get_run_logger, task


@task
def greeting(name: str) -> str:
    return f"hello, {name}, from {platform.node()}"


@flow(log_prints=True)
def hello(name: str = "prefect-kit", seconds: float = 0) -> str:
    """`seconds`: how long the run lasts, e.g. to watch a worker rollout leave a running Job alone."""
    message = greeting(name)
    get_run_logger().info(message)
    time.sleep(seconds)
    return message
