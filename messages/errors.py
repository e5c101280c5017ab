"""Why a message is refused: a stable code and a precise reason."""
from __future__ import annotations


class Rejected(ValueError):
    """A message that cannot be accepted, with a stable code and a precise reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """The error as the JSON object every entry point answers with."""
        return {"code": self.code, "message": self.message}
