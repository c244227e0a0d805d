"""The fetch stage: a chat link or attachment in, capped and checked media bytes out."""
