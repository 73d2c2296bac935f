class UserError(Exception):
    """Something the user must fix: printed as one `error:` line per problem, never with a traceback."""

    def __init__(self, *problems: str):
        super().__init__("\n".join(problems))
        self.problems = problems
