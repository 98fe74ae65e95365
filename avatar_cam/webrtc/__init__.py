"""WebRTC: the avatar to a browser (``serve``), calls between two avatar-cam instances
(``call``), and landmark-only calls of a few kbit/s in which the receiver renders.

    codec, basis, enroll   the landmark wire format and the per-person basis it codes in
    jitter, receive        the receiving side: playout buffer, rendering pipeline
    tracks, local          the sending side: the live pipeline into tracks and packets
    model_share, exchange  a person's model across the call: chunked, hashed, cached
    peer, options          one RTCPeerConnection
    server, page, call     `avatar-cam serve` (aiohttp + one page), `avatar-cam call`
    commands               their command-line wiring (imports nothing heavy)
"""
