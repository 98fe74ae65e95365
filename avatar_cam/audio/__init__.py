"""Sound for calls: microphones, speakers, Opus, the delay that keeps voice with picture,
and the virtual microphone for call apps (48 kHz mono int16 throughout)."""
