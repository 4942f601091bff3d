"""A simulated Efento temperature and humidity sensor: its readings, settings and messages.

Readings drift like a room's: a random walk pulled back towards a set point of its own.
The device keeps the settings a downlink gives it and answers the requests it carries
(`device_info_request`, `configuration_request`) on its next contacts, as a real one does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from preservarium_tools.simulator.efento_wire import (
    HUMIDITY,
    SERIAL_PREFIX,
    TEMPERATURE,
    Channel,
    ConfigField,
    Configuration,
    DeviceInfo,
    Measurements,
)

MAX_SAMPLES = 12
FIRST_AFTER_RESET = 1  # transfer_reason bit 0
BATTERY_MILLIVOLTS = 3600


def serial_number(first: bytes, index: int) -> bytes:
    """The serial of the `index`-th device (from 0), counting up from `first`."""
    value = int.from_bytes(first, "big") + index
    return value.to_bytes(len(first), "big")


def default_first_serial() -> bytes:
    """282c02000001: an Efento-style 6-byte serial number."""
    return SERIAL_PREFIX + (1).to_bytes(3, "big")


@dataclass(slots=True)
class Drift:
    """A reading that wanders: a random walk pulled back towards its set point."""

    value: float
    setpoint: float
    step: float
    low: float
    high: float
    pull: float = 0.1

    def advance(self, rng: random.Random) -> float:
        """The next reading."""
        self.value += rng.gauss(0.0, self.step) + (self.setpoint - self.value) * self.pull
        self.value = min(self.high, max(self.low, self.value))
        return self.value


@dataclass(slots=True)
class DeviceSettings:
    """What a server can change on the device."""

    period_base: int = 60
    period_factor: int = 1
    transmission_interval: int = 180
    ack_interval: int = 180
    configuration_hash: int = 1

    @property
    def period(self) -> int:
        """Seconds between two samples of a channel."""
        return self.period_base * max(1, self.period_factor)


@dataclass(slots=True)
class Counters:
    """Message counters, as the device reports them in its device info."""

    confirmable: int = 0
    non_confirmable: int = 0
    successful: int = 0


_SETTABLE = {
    "measurement_period_base": "period_base",
    "measurement_period_factor": "period_factor",
    "transmission_interval": "transmission_interval",
    "ack_interval": "ack_interval",
}
_REQUESTS = {"device_info_request": "i", "configuration_request": "c"}


@dataclass
class EfentoDevice:
    """One simulated sensor with a temperature channel and a humidity channel."""

    serial: bytes
    booted_at: int
    rng: random.Random
    settings: DeviceSettings = field(default_factory=DeviceSettings)
    counters: Counters = field(default_factory=Counters)
    measured: int = 0
    temperature: Drift = field(init=False)
    humidity: Drift = field(init=False)
    cloud_token: str = field(init=False)

    def __post_init__(self) -> None:
        room = self.rng.uniform(18.0, 24.0)
        damp = self.rng.uniform(35.0, 60.0)
        self.temperature = Drift(room, room, 0.15, -40.0, 85.0)
        self.humidity = Drift(damp, damp, 0.8, 0.0, 100.0)
        self.cloud_token = "8679970" + "".join(str(self.rng.randrange(10)) for _ in range(8))

    @classmethod
    def numbered(cls, first: bytes, index: int, *, now: int) -> EfentoDevice:
        """The `index`-th device of a run; its readings are reproducible from its serial."""
        serial = serial_number(first, index)
        return cls(serial=serial, booted_at=now, rng=random.Random(serial))

    @property
    def device_id(self) -> str:
        """The serial as 12 lower-case hex digits: what the parser's identify() returns."""
        return self.serial.hex()

    def measurements(self, now: int) -> Measurements:
        """The samples taken since the last transmission, newest at the last period mark."""
        config = self.settings
        period = config.period
        count = max(1, min(MAX_SAMPLES, config.transmission_interval // period))
        newest = now - now % period
        oldest = newest - (count - 1) * period
        temperatures = tuple(round(self.temperature.advance(self.rng) * 10) for _ in range(count))
        humidities = tuple(round(self.humidity.advance(self.rng)) for _ in range(count))
        self.measured += 1
        return Measurements(
            serial=self.serial,
            period_base=config.period_base,
            period_factor=config.period_factor,
            channels=(
                Channel(TEMPERATURE, oldest, temperatures),
                Channel(HUMIDITY, oldest, humidities),
            ),
            next_transmission_at=now + config.transmission_interval,
            transfer_reason=FIRST_AFTER_RESET if self.measured == 1 else 0,
            configuration_hash=config.configuration_hash,
            cloud_token=self.cloud_token,
            battery_millivolts=BATTERY_MILLIVOLTS,
        )

    def device_info(self, now: int) -> DeviceInfo:
        """What the device tells about itself."""
        counters = self.counters
        return DeviceInfo(
            serial=self.serial,
            up_time_s=max(0, now - self.booted_at),
            message_counters=(
                counters.confirmable,
                counters.non_confirmable,
                counters.successful,
            ),
            mcu_temperature=round(self.temperature.value) + 2,
            battery_millivolts=BATTERY_MILLIVOLTS,
            cloud_token=self.cloud_token,
        )

    def configuration(self) -> Configuration:
        """The configuration as the device has it."""
        config = self.settings
        return Configuration(
            serial=self.serial,
            period_base=config.period_base,
            period_factor=config.period_factor,
            transmission_interval=config.transmission_interval,
            ack_interval=config.ack_interval,
            configuration_hash=config.configuration_hash,
            channel_types=(TEMPERATURE, HUMIDITY),
        )

    def sent(self, *, confirmable: bool, answered: bool) -> None:
        """Count one message sent."""
        if confirmable:
            self.counters.confirmable += 1
        else:
            self.counters.non_confirmable += 1
        if answered:
            self.counters.successful += 1

    def apply(self, fields: Sequence[ConfigField]) -> list[str]:
        """Take a downlink's settings; return the paths it asks the device to send next."""
        requested: list[str] = []
        changed = False
        for item in fields:
            if item.name in _REQUESTS and item.value is True:
                requested.append(_REQUESTS[item.name])
            attribute = _SETTABLE.get(item.name or "")
            if attribute is not None and isinstance(item.value, int) and item.value > 0:
                setattr(self.settings, attribute, item.value)
                changed = True
        if changed:
            self.settings.configuration_hash += 1
        return requested
