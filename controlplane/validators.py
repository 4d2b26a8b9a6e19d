"""Validators shared by models and serializers."""

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.deconstruct import deconstructible

# Account names that would read as (or collide with) a system namespace or the control plane's own, were
# the namespace prefix ever empty, or let a tenant pass for the platform in logs and dashboards.
RESERVED_ACCOUNT_NAMES = frozenset({"default", "controlplane", "cp-system"})
RESERVED_ACCOUNT_PREFIXES = ("kube-", "openshift-")


@deconstructible
class FullMatchValidator(RegexValidator):
    """A RegexValidator that must match the whole value. ``RegexValidator`` searches, and ``$`` matches
    before a trailing newline, so ``^name$`` alone would accept ``"name\\n"``. The pattern keeps its
    ``^...$`` form so that OpenAPI clients (ECMA regexes) read the same rule."""

    def __call__(self, value):
        if bool(self.regex.fullmatch(str(value))) == self.inverse_match:
            raise ValidationError(self.message, code=self.code, params={"value": value})


@deconstructible
class AccountNameValidator:
    """Refuses the reserved account names (``RESERVED_ACCOUNT_NAMES``, ``RESERVED_ACCOUNT_PREFIXES``)."""

    message = "This name is reserved"
    code = "reserved"

    def __call__(self, value):
        if value in RESERVED_ACCOUNT_NAMES or str(value).startswith(RESERVED_ACCOUNT_PREFIXES):
            raise ValidationError(self.message, code=self.code, params={"value": value})

    def __eq__(self, other):
        return isinstance(other, AccountNameValidator)
