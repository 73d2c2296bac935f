"""The one place where a UserError becomes `error: …` lines and exit code 1."""

from __future__ import annotations

import functools
import sys

import invoke

from kit.errors import UserError


def task(*args, **kwargs):
    """invoke.task, with UserError printed as one line per problem instead of a traceback."""

    def decorate(body):
        @functools.wraps(body)
        def run(c, *a, **kw):
            try:
                return body(c, *a, **kw)
            except UserError as error:
                for problem in error.problems:
                    print(f"error: {problem}", file=sys.stderr)
                raise invoke.Exit(code=1) from None
            except KeyboardInterrupt:
                raise invoke.Exit("interrupted", code=130) from None

        return invoke.task(run, **kwargs)

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return decorate(args[0])
    return decorate
