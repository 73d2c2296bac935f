from kit.cli import task
from kit.errors import UserError

@task(help={"out": "dir"})
def hello(c, out="", force=False):
    """Placeholder."""
    if force:
        raise UserError("a: bad", "b: bad")
    print("ok", out)
