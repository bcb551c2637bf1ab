"""One grammar for every error a user can cause: what, where, and what to do next."""

from __future__ import annotations


class KeelsonError(Exception):
    """An error caused by the user's input, with a stable reason code and a next step.

    ``where`` names the file, key path, row or column; ``hint`` says what to do.
    The CLI prints ``str(error)`` as one line and exits non-zero; never a traceback.
    """

    code = "keelson_error"

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"{self.where}: {self.message}" if self.where else self.message]
        if self.hint:
            parts.append(self.hint)
        return " ".join(parts)


class SpecError(KeelsonError):
    code = "spec_invalid"


class SourceError(KeelsonError):
    code = "source_unreadable"


class ContractError(KeelsonError):
    code = "contract_failed"


class StoreError(KeelsonError):
    code = "store_error"


class NotFoundError(KeelsonError):
    code = "not_found"


class IntegrityError(KeelsonError):
    code = "artifact_integrity"
