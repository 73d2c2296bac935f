"""The one place where a UserError becomes `error: …` lines and exit code 1, and a bad option value one line too."""

from __future__ import annotations

import functools
import sys

import invoke
from invoke.parser import Argument

from kit.errors import UserError

_NUMBER_WORDS = {int: "a whole number", float: "a number"}


class _NumberArgument(Argument):
    """An int or float option whose bad value is one `error:` line: Invoke itself lets the ValueError escape
    as a traceback, while its ParseError is printed as it is, with exit code 1."""

    def set_value(self, value, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except ValueError:
            flag = f"--{self.name.replace('_', '-')}"
            raise invoke.ParseError(f"error: {flag}: {value!r} is not {_NUMBER_WORDS[self.kind]}; "
                                    f"e.g. {flag} {self.default}") from None


class _Task(invoke.Task):
    def get_arguments(self, *args, **kwargs) -> list[Argument]:
        return [_NumberArgument(names=arg.names, kind=arg.kind, default=arg.default, help=arg.help,
                                positional=arg.positional, optional=arg.optional,
                                incrementable=arg.incrementable, attr_name=arg.attr_name)
                if arg.kind in _NUMBER_WORDS else arg
                for arg in super().get_arguments(*args, **kwargs)]


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

        return invoke.task(run, klass=_Task, **kwargs)

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return decorate(args[0])
    return decorate


def ask(question: str) -> bool:
    """A yes/no question on the terminal; no answer (or no terminal) is no."""
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False
