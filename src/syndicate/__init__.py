"""syndicate: one article stream fanned out to feeds, a newsletter digest and partner webhooks."""

__version__ = "0.1.0"
