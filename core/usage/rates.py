"""What a GPU-hour costs: the operator's rates per GPU type, in one currency.

`TRAINPORT_GPU_HOUR_RATES` (`H100=2.5,A100=1.2`, or JSON) and `TRAINPORT_CURRENCY` are read
once per process into a `RateCard`. Run documents are built in many places (the ORM path, the
one-statement reads, the change feed on the event loop), all inside a request, so the API sets
the app's card for each request (`api.middleware.RateCardMiddleware`) and `current()` reads it;
outside a request (workers, scripts) it is the environment's. Costs are always at the current
rates: a rate change reprices past usage too, as a price list would.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from core.settings import Settings, get_settings

ANY_TYPE = "*"  # the rate of every GPU type the card does not name


@dataclass(frozen=True)
class RateCard:
    rates: dict[str, float] = field(default_factory=dict)  # lower-case GPU type -> per hour
    currency: str = "USD"

    @classmethod
    def of(cls, settings: Settings) -> RateCard:
        return cls(dict(settings.gpu_hour_rates), settings.currency)

    def rate(self, gpu_type: str | None) -> float:
        """Per GPU-hour of this type; 0 when neither it nor `*` is priced."""
        found = self.rates.get((gpu_type or "").lower())
        return found if found is not None else self.rates.get(ANY_TYPE, 0.0)

    def cost(self, gpu_type: str | None, gpu_hours: float) -> float:
        return money(self.rate(gpu_type) * gpu_hours)


def money(amount: float) -> float:
    """Costs to a millionth of the currency unit: exact sums, no float noise in documents."""
    return round(amount, 6)


def hours(seconds: float) -> float:
    """GPU-seconds as GPU-hours, to a millionth (3.6 ms of one GPU)."""
    return round(seconds / 3600.0, 6)


def tidy_hours(gpu_hours: float) -> float:
    """A sum of GPU-hours to the same millionth as `hours`."""
    return round(gpu_hours, 6)


_card: ContextVar[RateCard | None] = ContextVar("trainport_rate_card", default=None)


def current() -> RateCard:
    """The rate card of the request being served, else this process's environment's."""
    return _card.get() or RateCard.of(get_settings())


def use(card: RateCard) -> None:
    """Make `card` current for the rest of this context (a request, a thread's copy of it)."""
    _card.set(card)
