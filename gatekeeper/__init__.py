"""gatekeeper: an SSH ForceCommand that lets an agent run only vetted docker commands."""

__version__ = "0.1.0"
