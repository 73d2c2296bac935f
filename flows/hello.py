"""The example flow: proves a worker picks up a run, loads code from flows/ and reports back."""

import platform

from prefect import flow, get_run_logger, task


@task
def greeting(name: str) -> str:
    return f"hello, {name}, from {platform.node()}"


@flow(log_prints=True)
def hello(name: str = "prefect-kit") -> str:
    message = greeting(name)
    get_run_logger().info(message)
    return message
