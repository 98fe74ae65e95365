"""A virtual microphone that call apps (Zoom, Meet, Teams) list like any other.

With the virtual camera, a call app takes the microphone directly, so the voice would
lead the avatar by the pipeline's latency. ``VirtualMic`` is a PulseAudio/PipeWire null
sink (``avatar_cam_mic``) whose monitor is remapped to a source named "avatar-cam
microphone" (``avatar_cam_source``); what ``write`` plays into the sink is what the app
hears. ``run --virtual-mic`` writes the real microphone into it, held back by the
pipeline's measured latency. ``close`` unloads exactly the modules it loaded.

Windows and macOS have no such server: there a virtual audio cable does it (VB-CABLE,
BlackHole; see the README), with the app's own audio delay setting.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np

from . import pulse
from .chunk import AudioError, check_samples

SINK = "avatar_cam_mic"
SOURCE = "avatar_cam_source"
DESCRIPTION = "avatar-cam microphone"


class VirtualMic:
    def __init__(self, sink: str = SINK, source: str = SOURCE,
                 description: str = DESCRIPTION) -> None:
        if not sys.platform.startswith("linux"):
            raise AudioError(f"--virtual-mic needs PulseAudio or PipeWire (Linux), not "
                             f"{sys.platform}",
                             "use VB-CABLE (Windows) or BlackHole (macOS): see the README")
        pulse.pactl("info", fix="start PulseAudio or PipeWire (pulseaudio --start; Debian: "
                    "apt-get install pulseaudio pulseaudio-utils), or run without "
                    "--virtual-mic")
        self.sink, self.source = sink, source
        self.modules: list[str] = []
        # Module arguments quote the whole value, proplists quote the string inside it.
        feed = f"'device.description=\"{description} (feed)\"'"
        label = f"'device.description=\"{description}\"'"
        try:
            if not pulse.sink_exists(sink):
                self.modules.append(pulse.pactl(
                    "load-module", "module-null-sink", f"sink_name={sink}",
                    "rate=48000", "channels=1",
                    f"sink_properties={feed}").strip())
            if not pulse.source_exists(source):
                self.modules.append(pulse.pactl(
                    "load-module", "module-remap-source", f"master={sink}.monitor",
                    f"source_name={source}",
                    f"source_properties={label}").strip())
            self._out = pulse.Play(sink, latency_ms=20)
            if self.modules:
                # A new null sink sleeps in 2 s blocks until something wakes it: measured,
                # pacat's first writes waited 1-2 s (and then 40 ms every other chunk).
                # Suspended and resumed, it runs at the latency its stream asks for.
                with contextlib.suppress(AudioError):
                    pulse.pactl("suspend-sink", sink, "1")
                    pulse.pactl("suspend-sink", sink, "0")
        except BaseException:
            self._unload()
            raise

    def write(self, samples: np.ndarray) -> None:
        """Play ``samples`` into the virtual microphone (blocks while the server has no
        room: a burst is held up here, not queued as latency; see ``pulse.Play``)."""
        self._out.write(check_samples(samples))

    @property
    def samples_written(self) -> int:
        return self._out.samples_written

    def _unload(self) -> None:
        for module in reversed(self.modules):
            with contextlib.suppress(AudioError):
                pulse.pactl("unload-module", module)
        self.modules.clear()

    def close(self) -> None:
        self._out.close()
        self._unload()
