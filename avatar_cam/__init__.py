"""avatar-cam: a real-time personalized video-call avatar."""

__version__ = "0.1.0"
