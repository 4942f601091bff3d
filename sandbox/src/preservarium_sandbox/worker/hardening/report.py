"""What hardening a worker ended up with: the layers, in order, and why any is missing."""

from __future__ import annotations

from dataclasses import dataclass

LAYERS: tuple[str, ...] = (
    "closed_fds", "network_namespace", "rlimits", "no_new_privs", "capabilities", "seccomp",
)  # fmt: skip
"""The layers in the order `harden()` applies them."""


@dataclass(frozen=True)
class HardeningReport:
    """Which hardening layers a worker ended up with, and why the missing ones are missing."""

    rlimits: bool
    no_new_privs: bool
    network_namespace: bool
    seccomp: bool
    closed_fds: bool
    capabilities: bool = False
    notes: tuple[str, ...] = ()

    def active_layers(self) -> list[str]:
        """Names of the active layers, in the order they are applied."""
        return [name for name in LAYERS if getattr(self, name)]

    def summary(self) -> str:
        """One log line: active layers, inactive layers and the reasons."""
        active = self.active_layers()
        inactive = [name for name in LAYERS if name not in active]
        line = f"hardening: active={','.join(active) or 'none'}"
        line += f" inactive={','.join(inactive) or 'none'}"
        if self.notes:
            # Notes come from OS error strings; keep the summary on one line whatever they hold.
            line += " notes=" + "; ".join(" ".join(note.split()) for note in self.notes)
        return line
