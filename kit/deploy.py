"""`inv deploy`: doctor → build → push → secrets → rollout (which makes the pools true) → flows → status,
stopping at the first failure (for doctor: at its first ✗).

Each step is the same kit function its own task calls; this module only orders them and says where a
failed deploy stopped, so the user knows which steps are already done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kit import ROOT, rollout
from kit.errors import UserError
from kit.settings import Settings


def deploy(settings: Settings, *, no_cache: bool = False, timeout: float = rollout.DEFAULT_TIMEOUT,
           api_url: str | None = None, out: Callable[[str], None] | None = None) -> None:
    """out None: print, and build and push draw their live progress on the terminal; else plain lines to out."""
    from kit import doctor, flows, image, status

    say = out or print
    with _step("doctor", say):
        if not doctor.run(lambda: settings, say):
            raise UserError("doctor: a check above is ✗; fix it (its line says how), then run `inv deploy` again")
    with _step("build", say):
        image.build(settings, ROOT, no_cache=no_cache, echo=out)
    with _step("push", say):
        pushed = image.push(settings, ROOT, echo=out)
    with _step("secrets", say):
        rollout.secrets(settings, out=say)
    with _step("rollout", say):
        rollout.rollout(settings, tag=pushed.tag, timeout=timeout, api_url=api_url, out=say)
    with _step("flows", say):
        flows.deploy(settings, api_url, out=say)
    with _step("status", say):
        status.show(settings, api_url, out=say)


@contextmanager
def _step(name: str, out: Callable[[str], None]) -> Iterator[None]:
    out(f"==> {name}")
    try:
        yield
    except UserError as error:
        raise UserError(*error.problems, f"deploy: stopped at `{name}` (the steps before it are done); "
                                         "fix the above and run `inv deploy` again") from None
