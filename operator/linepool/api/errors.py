"""The one error type of spec validation: it names the field and says why."""


class SpecError(ValueError):
    """A spec field is malformed or breaks a rule; ``field`` is its dotted path."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
